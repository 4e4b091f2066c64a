# Hyper-V Gen2 FreeBSD boxes for the hyperv-vss pipeline: one with root on
# UFS, one with root on ZFS. Each boots the release ISO, types the commands
# that fetch http/installerconfig from Packer's HTTP server and run
# bsdinstall, then installs the hyperv-vss package and the kernel module
# built from port/hyperv-vss-kmod, reboots into our module and checks it,
# and leaves a Vagrant box (output/hyperv-vss-freebsd-<ufs|zfs>.box).
#
# Run through tests/hyperv/run.ps1 (it passes the package and the source
# tarball). By hand, from tests/hyperv/packer on the Hyper-V host:
#   packer init plugins/plugins.pkr.hcl
#   packer build -var pkg_file=..\..\..\dist\hyperv-vss-0.1.0.pkg `
#     -var src_file=C:\tmp\hyperv-vss-src.tar .
#
# Written for both Packer 1.6 (Debian's, which CI uses to validate it) and
# current Packer with the hyperv and vagrant plugins: no required_plugins
# block here (see plugins/plugins.pkr.hcl), no http_content, no dynamic
# blocks.

variable "iso_url" {
  type        = string
  description = "FreeBSD 14.x amd64 release ISO (disc1)."
  default     = "https://download.freebsd.org/releases/amd64/amd64/ISO-IMAGES/14.4/FreeBSD-14.4-RELEASE-amd64-disc1.iso"
}

variable "iso_checksum" {
  type        = string
  description = "Checksum of iso_url: \"sha256:<hex>\", or \"file:<url of CHECKSUM.SHA256-...>\"."
  default     = "file:https://download.freebsd.org/releases/amd64/amd64/ISO-IMAGES/14.4/CHECKSUM.SHA256-FreeBSD-14.4-RELEASE-amd64"
}

variable "freebsd_dist_site" {
  type        = string
  description = "Directory holding src.txz of the installed release, for a mirror or a custom ISO. Empty: src.txz comes from the ISO when it carries it, else from the running release's own directory (guest/lib.sh: dist_site); either way provision.sh checks that the sources are the running kernel's release."
  default     = ""
}

variable "ports_branch" {
  type        = string
  description = "Ports branch for the kmod port's build framework. Empty: the branch the guest's pkg repository is built from (quarterly: this quarter's, e.g. 2026Q4; latest: main)."
  default     = ""
}

variable "pkg_file" {
  type        = string
  description = "The hyperv-vss-<version>.pkg built by scripts/build-pkg."
}

variable "src_file" {
  type        = string
  description = "Uncompressed tar of the hyperv-vss source tree (git archive), for the kmod port."
}

variable "switch_name" {
  type        = string
  description = "Hyper-V virtual switch with DHCP and Internet access (the guest installs packages)."
  default     = "Default Switch"
}

variable "cpus" {
  type    = number
  default = 2
}

variable "memory" {
  type        = number
  description = "MiB. The kmod port compiles Rust's core in the guest: keep at least 4096."
  default     = 4096
}

variable "disk_size" {
  type        = number
  description = "MiB."
  default     = 20480
}

variable "boot_wait" {
  type        = string
  description = "Time from power-on to the loader menu."
  default     = "10s"
}

variable "installer_wait" {
  type        = string
  description = "Time from leaving the loader menu to bsdinstall's welcome dialog."
  default     = "60s"
}

variable "http_port" {
  type        = number
  description = "Port of Packer's HTTP server on the host (run.ps1 opens it in the Windows firewall)."
  default     = 8870
}

variable "output_dir" {
  type    = string
  default = "output"
}

locals {
  # Typed at bsdinstall's welcome dialog: "s" opens the shell. The live
  # system's root is read-only, so /tmp gets a memory disk; dhclient keeps
  # its lease there. fetch(1) takes the script from Packer's HTTP server.
  boot_steps = [
    "<enter><wait${var.installer_wait}>",
    "s<wait5>",
    "mdmfs -s 64m md /tmp<enter><wait2>",
    "dhclient -l /tmp/dhclient.leases -p /tmp/dhclient.pid hn0<enter><wait15>",
    "fetch -o /tmp/installerconfig http://{{ .HTTPIP }}:{{ .HTTPPort }}/installerconfig<enter><wait5>",
  ]
  # The installer's "Install" path exports BSDINSTALL_CONFIGCURRENT=yes, its
  # "Shell" path (ours) does not (release/rc.local). Without it bsdinstall's
  # bootconfig creates no UEFI boot entry for the installed system
  # (usr.sbin/bsdinstall/scripts/bootconfig: update_uefi_bootentry); with it,
  # efibootmgr --create puts the new "FreeBSD" entry first in BootOrder
  # (usr.sbin/efibootmgr/efibootmgr.c: add_to_boot_order, "it goes on the
  # front"), so the reboot after the install starts the installed system
  # although the DVD stays first in the VM's configured boot order.
  install_command = "BSDINSTALL_CONFIGCURRENT=yes bsdinstall script /tmp/installerconfig && reboot<enter>"
}

source "hyperv-iso" "freebsd" {
  iso_url      = var.iso_url
  iso_checksum = var.iso_checksum

  generation = 2
  # FreeBSD's loader is not signed for either secure boot template.
  enable_secure_boot    = false
  enable_dynamic_memory = false
  guest_additions_mode  = "disable"
  switch_name           = var.switch_name
  cpus                  = var.cpus
  memory                = var.memory
  disk_size             = var.disk_size
  headless              = true
  # The DVD first, then the disk, and nothing else: no PXE attempt before
  # the DVD that would shift the typed boot_command's timings. New-VM puts
  # the new disk at SCSI 0:0 and Add-VMDvdDrive the ISO at the next free
  # location, SCSI 0:1 (the plugin's CreateVirtualMachine and CreateDvdDrive,
  # builder/hyperv/common/powershell/hyperv/hyperv.go); boot_order accepts
  # only SCSI:x:y entries, and its documentation asks for first_boot_device
  # too, which finds the DVD wherever the plugin attached it. After the
  # install, the installed system's own UEFI entry comes first
  # (install_command above). ci/check_template.py checks these lines.
  first_boot_device = "DVD"
  boot_order        = ["SCSI:0:1", "SCSI:0:0"]

  http_directory = "${path.root}/http"
  http_port_min  = var.http_port
  http_port_max  = var.http_port
  boot_wait      = var.boot_wait

  # Packer learns the guest's address from Hyper-V's KVP exchange, which
  # the installed system's hv_kvp_daemon feeds; no address during install.
  communicator     = "ssh"
  ssh_username     = "root"
  ssh_password     = "vagrant"
  ssh_timeout      = "45m"
  shutdown_command = "shutdown -p now"
  shutdown_timeout = "10m"
}

build {
  description = "hyperv-vss test boxes: FreeBSD 14 Gen2, root on UFS and on ZFS"

  source "source.hyperv-iso.freebsd" {
    name             = "ufs"
    vm_name          = "hyperv-vss-packer-ufs"
    output_directory = "${var.output_dir}/vm-ufs"
    boot_command     = concat(local.boot_steps, ["ROOTFS=ufs ${local.install_command}"])
  }

  source "source.hyperv-iso.freebsd" {
    name             = "zfs"
    vm_name          = "hyperv-vss-packer-zfs"
    output_directory = "${var.output_dir}/vm-zfs"
    boot_command     = concat(local.boot_steps, ["ROOTFS=zfs ${local.install_command}"])
  }

  # The guest helpers first: provision.sh and verify-boot.sh use lib.sh.
  provisioner "file" {
    source      = "${path.root}/../guest/lib.sh"
    destination = "/tmp/hvvss-lib.sh"
  }

  provisioner "file" {
    source      = "${path.root}/../guest/hvvss-test.sh"
    destination = "/tmp/hvvss-test.sh"
  }

  provisioner "shell" {
    inline = [
      "install -d /usr/local/libexec/hvvss-test",
      "install -m 0644 /tmp/hvvss-lib.sh /usr/local/libexec/hvvss-test/lib.sh",
      "install -m 0755 /tmp/hvvss-test.sh /usr/local/libexec/hvvss-test/hvvss-test.sh",
    ]
  }

  provisioner "file" {
    source      = var.pkg_file
    destination = "/tmp/hyperv-vss.pkg"
  }

  provisioner "file" {
    source      = var.src_file
    destination = "/tmp/hyperv-vss-src.tar"
  }

  # The list of files the package and the kmod port install; provision.sh
  # checks the guest against it (and CI checks it against pkg-plist).
  provisioner "file" {
    source      = "${path.root}/../expected-files"
    destination = "/tmp/hvvss-expected-files"
  }

  provisioner "shell" {
    script = "${path.root}/../guest/provision.sh"
    environment_vars = [
      "HVVSS_DIST_SITE=${var.freebsd_dist_site}",
      "HVVSS_PORTS_BRANCH=${var.ports_branch}",
    ]
    execute_command = "chmod +x {{ .Path }}; env {{ .Vars }} {{ .Path }}"
  }

  # Boot into our module: loaded by the loader, it wins the VSS channel's
  # probe over the base driver, and devd starts our daemon when our module
  # creates the device.
  provisioner "shell" {
    inline            = ["shutdown -r now"]
    expect_disconnect = true
  }

  provisioner "shell" {
    pause_before    = "30s"
    script          = "${path.root}/../guest/verify-boot.sh"
    execute_command = "chmod +x {{ .Path }}; env {{ .Vars }} {{ .Path }}"
  }

  provisioner "shell" {
    script          = "${path.root}/../guest/vagrant-user.sh"
    execute_command = "chmod +x {{ .Path }}; env {{ .Vars }} {{ .Path }}"
  }

  post-processor "vagrant" {
    output = "${var.output_dir}/hyperv-vss-freebsd-${source.name}.box"
  }
}
