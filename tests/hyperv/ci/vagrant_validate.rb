# `vagrant validate` for tests/hyperv/Vagrantfile, including the hyperv
# provider block, on a machine without Hyper-V.
#
# Plain `vagrant validate` stops before validating anything on Linux (the
# hyperv provider reports itself unusable: "only works on Windows"), and
# `vagrant validate --ignore-provider` skips the provider block entirely.
# Here the provider's usability check alone is replaced, so Vagrant's own
# validation runs over everything: the global config, both machines, and the
# hyperv provider settings (unknown keys, integration service values,
# auto start/stop actions). Nothing talks to Hyper-V.
#
# usage: ruby ci/vagrant_validate.rb DIR_WITH_VAGRANTFILE
require "tmpdir"
require "vagrant"

dir = ARGV.fetch(0) { abort "usage: ruby vagrant_validate.rb DIR" }
ENV["VAGRANT_DEFAULT_PROVIDER"] = "hyperv"
ENV["VAGRANT_CHECKPOINT_DISABLE"] = "1"

# Machine state goes to a temporary directory, not DIR/.vagrant.
Dir.mktmpdir("hvvss-vagrant-validate-") do |data|
  env = Vagrant::Environment.new(cwd: dir, local_data_path: data, ui_class: Vagrant::UI::Basic)
  provider = Vagrant.plugin("2").manager.providers[:hyperv]
  abort "vagrant has no hyperv provider" unless provider
  provider[0].define_singleton_method(:usable?) { |*_args| true }
  exit env.cli("validate")
rescue Vagrant::Errors::VagrantError => e
  warn e.message
  exit 1
end
