#!/usr/bin/env bash
# Checks of the Hyper-V pipeline (tests/hyperv/) that can run on Linux.
# The pipeline itself runs only on a Windows host with Hyper-V; here:
#   - packer fmt -check and packer validate (Debian's packer 1.6.6 has the
#     hyperv-iso builder and the vagrant post-processor built in);
#   - vagrant validate, including the hyperv provider block (ci/vagrant_validate.rb);
#   - shellcheck of every shell script of the pipeline;
#   - static checks of run.ps1 with tree-sitter's PowerShell grammar (no
#     registry ships pwsh): syntax, known commands and parameters, no dead
#     functions (ci/ps_check.py, ci/ps-commands.txt);
#   - the drift check: expected-files == what pkg-plist and the kmod port
#     install, and the daemon's status JSON/syslog line/pidfile are what the
#     scripts read (ci/check_drift.py).
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

banner "hyperv: install packer, vagrant, shellcheck, tree-sitter"
start=$SECONDS
ensure_apt packer vagrant shellcheck python3-venv
venv="$HVVSS_TOOLS/ps-venv"
if ! "$venv/bin/python" -c 'import tree_sitter, tree_sitter_powershell' 2>/dev/null; then
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q 'tree-sitter>=0.23,<0.27' 'tree-sitter-powershell>=0.25,<0.27'
fi
echo "installs took $((SECONDS - start)) s"
packer version

banner "hyperv: packer fmt -check, packer validate"
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

banner "hyperv: vagrant validate"
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_DOTFILE_PATH="$scratch/vagrant-dot"
VAGRANT_CWD="$hv" vagrant validate --ignore-provider
ruby "$hv/ci/vagrant_validate.rb" "$hv"
cp "$hv/Vagrantfile" "$scratch/broken/Vagrantfile"
sed -i 's/h.auto_stop_action = "TurnOff"/h.auto_stop_action = "Explode"/' "$scratch/broken/Vagrantfile"
must_fail "a Vagrantfile with a bad hyperv auto_stop_action" "Received: Explode" ruby "$hv/ci/vagrant_validate.rb" "$scratch/broken"

banner "hyperv: shellcheck"
shellcheck -s sh "$hv"/guest/*.sh "$hv/packer/http/installerconfig"
shellcheck -x .ci/checks/60-hyperv.sh
echo "ok: $(find "$hv/guest" -name '*.sh' | wc -l) guest scripts, installerconfig, this script"

banner "hyperv: PowerShell static checks (tree-sitter)"
"$venv/bin/python" "$hv/ci/ps_check.py" "$hv/run.ps1"
# shellcheck disable=SC2016 # the $ are PowerShell's, not the shell's
sed 's/^function Wait-Guest(\[string\] \$Machine) {/function Wait-Guest([string] $Machine) {{/' \
	"$hv/run.ps1" >"$scratch/broken.ps1"
must_fail "run.ps1 with an unbalanced brace" "cannot parse\|missing" "$venv/bin/python" "$hv/ci/ps_check.py" "$scratch/broken.ps1"
sed 's/-TurnOff -Force/-TurnOf -Force/' "$hv/run.ps1" >"$scratch/broken.ps1"
must_fail "run.ps1 with a misspelt cmdlet parameter" "Stop-VM -turnof" "$venv/bin/python" "$hv/ci/ps_check.py" "$scratch/broken.ps1"

banner "hyperv: provisioning vs packaging (drift)"
python3 "$hv/ci/check_drift.py"
grep -v 'sbin/hv_vss_app' "$hv/expected-files" >"$scratch/expected-files"
must_fail "an expected-files without hv_vss_app" "sbin/hv_vss_app is produced" python3 "$hv/ci/check_drift.py" --expected "$scratch/expected-files"

echo "hyperv checks passed in $SECONDS s"
