# Plugins for current Packer (1.7 and later no longer bundle the hyperv
# builder and the vagrant post-processor). run.ps1 runs `packer init` on
# this file before `packer build`. It lives apart from the template because
# Packer 1.6 (Debian's, used by CI to validate the template) does not know
# the required_plugins block.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    hyperv = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/hyperv"
    }
    vagrant = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/vagrant"
    }
  }
}
