#!/bin/sh
# Packer provisioner, last step: what Vagrant expects of a box. A vagrant
# user with passwordless sudo and Vagrant's public insecure keys (Vagrant
# replaces them with a generated key on first `vagrant up`), and no more
# root login over ssh from the next boot on.
set -eu

export ASSUME_ALWAYS_YES=yes
pkg install -y sudo

if ! pw usershow vagrant >/dev/null 2>&1; then
	pw useradd vagrant -m -s /bin/sh -G wheel -c 'Vagrant'
fi
echo 'vagrant' | pw usermod vagrant -h 0
printf 'vagrant ALL=(ALL:ALL) NOPASSWD: ALL\n' >/usr/local/etc/sudoers.d/vagrant
chmod 0440 /usr/local/etc/sudoers.d/vagrant
visudo -c -f /usr/local/etc/sudoers.d/vagrant

keys=https://raw.githubusercontent.com/hashicorp/vagrant/main/keys
install -d -o vagrant -g vagrant -m 0700 /home/vagrant/.ssh
fetch -q -o /home/vagrant/.ssh/authorized_keys "$keys/vagrant.pub"
# Newer Vagrant also offers an ed25519 key; older releases do not publish it.
if fetch -q -o /tmp/vagrant.pub.ed25519 "$keys/vagrant.pub.ed25519"; then
	cat /tmp/vagrant.pub.ed25519 >>/home/vagrant/.ssh/authorized_keys
	rm -f /tmp/vagrant.pub.ed25519
fi
chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys
chmod 0600 /home/vagrant/.ssh/authorized_keys

# Root keeps its console password (like the vagrant user's, as in every
# Vagrant box); only root over ssh goes. sshd reads this at its next start,
# so Packer's shutdown_command still gets in as root now.
sed -i '' -e 's/^PermitRootLogin.*/PermitRootLogin no/' /etc/ssh/sshd_config
echo '==> vagrant-user: vagrant user ready, root ssh login off from the next boot'
