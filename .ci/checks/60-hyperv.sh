#!/usr/bin/env bash
# Checks of the Hyper-V pipeline (tests/hyperv/) that can run on Linux.
# The pipeline itself runs only on a Windows host with Hyper-V; here:
#   - line endings: a core.autocrlf=true (Windows) clone has no CR in any
#     file the guest reads, run.ps1's `git archive` writes LF whatever the
#     configuration, run.ps1 is ASCII (ci/check_line_endings.py);
#   - packer fmt -check and packer validate (Debian's packer 1.6.6 has the
#     hyperv-iso builder and the vagrant post-processor built in), and the
#     boot order packer does not validate: DVD, then disk, and the installed
#     system's UEFI entry (ci/check_template.py, python-hcl2);
#   - vagrant validate, including the hyperv provider block (ci/vagrant_validate.rb);
#   - shellcheck of every shell script of the pipeline, and guest/lib.sh's
#     decisions (which driver owns the VSS channel, where src.txz is, the
#     ports branch) run under sh on FreeBSD-shaped input (ci/guest_lib_test.sh);
#   - static checks of run.ps1 with tree-sitter's PowerShell grammar (no
#     registry ships pwsh): syntax, known commands and parameters, no dead
#     functions (ci/ps_check.py, ci/ps-commands.txt); and its promises: the
#     documented exit status, a failed `vagrant up` as a setup failure, the
#     VSS integration service checked after every boot (ci/run_contract.py);
#   - the drift check: expected-files == what pkg-plist and the kmod port
#     install, and the daemon's status JSON/syslog line/pidfile are what the
#     scripts read, and the VSS class GUID, driver and module names the
#     guest checks (ci/check_drift.py).
# Each checker is also shown a broken input and must reject it, so a checker
# that silently accepts everything fails CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

hv=tests/hyperv
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# must_fail WHAT PATTERN CMD...: CMD must fail, saying PATTERN (so it
# fails for the planted fault, not for another reason).
must_fail() {
	local what=$1 pattern=$2
	shift 2
	if "$@" >"$scratch/must_fail.log" 2>&1; then
		echo "checker accepted a broken input ($what):" >&2
		cat "$scratch/must_fail.log" >&2
		exit 1
	fi
	if ! grep -q -- "$pattern" "$scratch/must_fail.log"; then
		echo "checker rejected $what without saying '$pattern':" >&2
		cat "$scratch/must_fail.log" >&2
		exit 1
	fi
	echo "ok: rejected $what"
}

banner "hyperv: install packer, vagrant, shellcheck, git, tree-sitter, python-hcl2"
start=$SECONDS
ensure_apt packer vagrant shellcheck git python3-venv
venv=$(ensure_venv ps-venv 'import tree_sitter, tree_sitter_powershell, hcl2' \
	'tree-sitter>=0.23,<0.27' 'tree-sitter-powershell>=0.25,<0.27' 'python-hcl2>=8,<9')
echo "installs took $((SECONDS - start)) s"
packer version

banner "hyperv: line endings (a Windows checkout, the archive step)"
python3 "$hv/ci/check_line_endings.py"
# A commit without .gitattributes: its Windows checkout has CRLF.
git clone -q . "$scratch/noattr"
git -C "$scratch/noattr" rm -q .gitattributes
git -C "$scratch/noattr" -c user.name=ci -c user.email=ci@localhost commit -qm "no attributes"
must_fail "a commit without .gitattributes" "CRLF in" python3 "$hv/ci/check_line_endings.py" --repo "$scratch/noattr"
# shellcheck disable=SC2016 # the $ is PowerShell's
sed 's/^\$GitArchiveOptions = @(.*)$/$GitArchiveOptions = @()/' "$hv/run.ps1" >"$scratch/plain-archive.ps1"
must_fail "a plain git archive (no options)" "writes CRLF" python3 "$hv/ci/check_line_endings.py" --run-ps1 "$scratch/plain-archive.ps1"
sed 's/^# One row per scenario/# Eine Zeile pro Szenario \xc3\xbc/' "$hv/run.ps1" >"$scratch/non-ascii.ps1"
must_fail "a non-ASCII run.ps1" "non-ASCII" python3 "$hv/ci/check_line_endings.py" --run-ps1 "$scratch/non-ascii.ps1"

banner "hyperv: packer fmt -check, packer validate, boot order"
export CHECKPOINT_DISABLE=1 # no update check against HashiCorp's servers
packer fmt -check -diff "$hv/packer"
packer fmt -check -diff "$hv/packer/plugins"
# The template needs the package and the source tarball to exist (file
# provisioners), and would download the ISO checksum file: give it
# stand-ins. Everything else is validated as written.
touch "$scratch/hyperv-vss-0.0.0.pkg" "$scratch/hyperv-vss-src.tar"
validate_args=(-var "pkg_file=$scratch/hyperv-vss-0.0.0.pkg" -var "src_file=$scratch/hyperv-vss-src.tar"
	-var "iso_checksum=sha256:$(printf '%064d' 0)")
packer validate "${validate_args[@]}" "$hv/packer"
# A copy of the sources only (no output/ or .vagrant/ of a local run).
mkdir "$scratch/broken"
cp -r "$hv/packer" "$hv/guest" "$hv/expected-files" "$scratch/broken/"
sed -i 's/generation = 2/generation = 2\n  no_such_option = true/' "$scratch/broken/packer/freebsd.pkr.hcl"
must_fail "a template with an unknown builder option" no_such_option packer validate "${validate_args[@]}" "$scratch/broken/packer"
"$venv/bin/python" "$hv/ci/check_template.py"
sed 's/boot_order        = \["SCSI:0:1", "SCSI:0:0"\]/boot_order        = ["SCSI:0:0", "SCSI:0:1"]/' \
	"$hv/packer/freebsd.pkr.hcl" >"$scratch/disk-first.pkr.hcl"
must_fail "a boot order with the disk first" "expected \['SCSI:0:1', 'SCSI:0:0'\]" "$venv/bin/python" "$hv/ci/check_template.py" "$scratch/disk-first.pkr.hcl"
sed 's/BSDINSTALL_CONFIGCURRENT=yes bsdinstall script/bsdinstall script/' \
	"$hv/packer/freebsd.pkr.hcl" >"$scratch/no-uefi-entry.pkr.hcl"
must_fail "an install without a UEFI boot entry" "no UEFI boot entry" "$venv/bin/python" "$hv/ci/check_template.py" "$scratch/no-uefi-entry.pkr.hcl"

banner "hyperv: vagrant validate"
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_DOTFILE_PATH="$scratch/vagrant-dot"
VAGRANT_CWD="$hv" vagrant validate --ignore-provider
ruby "$hv/ci/vagrant_validate.rb" "$hv"
cp "$hv/Vagrantfile" "$scratch/broken/Vagrantfile"
sed -i 's/h.auto_stop_action = "TurnOff"/h.auto_stop_action = "Explode"/' "$scratch/broken/Vagrantfile"
must_fail "a Vagrantfile with a bad hyperv auto_stop_action" "Received: Explode" ruby "$hv/ci/vagrant_validate.rb" "$scratch/broken"

banner "hyperv: shellcheck, guest/lib.sh"
shellcheck -x -s sh "$hv"/guest/*.sh "$hv/packer/http/installerconfig" "$hv/ci/guest_lib_test.sh"
shellcheck -x .ci/checks/60-hyperv.sh
echo "ok: $(find "$hv/guest" -name '*.sh' | wc -l) guest scripts, installerconfig, the lib test, this script"
sh "$hv/ci/guest_lib_test.sh"
sed 's/^OUR_DRIVER=hvvss_rs$/OUR_DRIVER=hvvss/' "$hv/guest/lib.sh" >"$scratch/lib-base-wins.sh"
must_fail "a lib.sh that accepts the base driver" "the base driver fails the check" sh "$hv/ci/guest_lib_test.sh" "$scratch/lib-base-wins.sh"
# shellcheck disable=SC2016 # the $ are sh's, in the planted fault
sed 's/release=\${1%-p\*}/release=$1/' "$hv/guest/lib.sh" >"$scratch/lib-patchlevel.sh"
must_fail "a lib.sh that looks for a patch level's src.txz" "patched release" sh "$hv/ci/guest_lib_test.sh" "$scratch/lib-patchlevel.sh"

banner "hyperv: PowerShell static checks (tree-sitter)"
"$venv/bin/python" "$hv/ci/ps_check.py" "$hv/run.ps1"
# shellcheck disable=SC2016 # the $ are PowerShell's, not the shell's
sed 's/^function Wait-Guest(\[string\] \$Machine) {/function Wait-Guest([string] $Machine) {{/' \
	"$hv/run.ps1" >"$scratch/broken.ps1"
must_fail "run.ps1 with an unbalanced brace" "cannot parse\|missing" "$venv/bin/python" "$hv/ci/ps_check.py" "$scratch/broken.ps1"
sed 's/-TurnOff -Force/-TurnOf -Force/' "$hv/run.ps1" >"$scratch/broken.ps1"
must_fail "run.ps1 with a misspelt cmdlet parameter" "Stop-VM -turnof" "$venv/bin/python" "$hv/ci/ps_check.py" "$scratch/broken.ps1"
"$venv/bin/python" "$hv/ci/run_contract.py"
# shellcheck disable=SC2016 # the $ are PowerShell's
sed 's/Add-Result -Phase setup -Name "\$fs-setup"/Add-Result -Phase scenario -Name "$fs-setup"/' "$hv/run.ps1" >"$scratch/broken.ps1"
must_fail "run.ps1 counting a failed vagrant up as a failed scenario" "Add-Result -Phase setup" "$venv/bin/python" "$hv/ci/run_contract.py" "$scratch/broken.ps1"
# shellcheck disable=SC2016 # the $ are PowerShell's
sed '/^    Wait-VssIntegration -VMName \$VMName$/d' "$hv/run.ps1" >"$scratch/broken.ps1"
must_fail "run.ps1 without the VSS integration preflight" "does not call Wait-VssIntegration" "$venv/bin/python" "$hv/ci/run_contract.py" "$scratch/broken.ps1"
sed 's/^exit (Get-ExitStatus)$/exit 1/' "$hv/run.ps1" >"$scratch/broken.ps1"
must_fail "run.ps1 with a fixed exit status" "exit (Get-ExitStatus)" "$venv/bin/python" "$hv/ci/run_contract.py" "$scratch/broken.ps1"

banner "hyperv: provisioning vs packaging (drift)"
python3 "$hv/ci/check_drift.py"
grep -v 'sbin/hv_vss_app' "$hv/expected-files" >"$scratch/expected-files"
must_fail "an expected-files without hv_vss_app" "sbin/hv_vss_app is produced" python3 "$hv/ci/check_drift.py" --expected "$scratch/expected-files"

echo "hyperv checks passed in $SECONDS s"
