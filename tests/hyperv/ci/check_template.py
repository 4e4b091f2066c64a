"""The boot order of the Packer template, which `packer validate` does not check.

The hyperv-iso plugin accepts any string in boot_order and silently drops
the entries that are not SCSI:x:y (SetBootOrder in the plugin's
builder/hyperv/common/powershell/hyperv/hyperv.go), so a typo there only
shows on the Windows host, as a PXE attempt or an installer that never
starts. This fails CI unless:

  - first_boot_device is "DVD" (the plugin finds the ISO's drive itself);
  - boot_order is exactly the DVD, then the disk, as SCSI:x:y: the plugin's
    New-VM puts the new disk at SCSI 0:0 (Generation 2) and its
    Add-VMDvdDrive the ISO at the next free location, SCSI 0:1
    (CreateVirtualMachine and CreateDvdDrive there); no network entry;
  - every source types the install command that sets
    BSDINSTALL_CONFIGCURRENT=yes, so bsdinstall gives the installed system
    a UEFI boot entry ahead of the DVD (bootconfig, efibootmgr).

usage: python3 check_template.py [TEMPLATE]   (python-hcl2 parses it)
"""

import re
import sys
from pathlib import Path

import hcl2

DISK = "SCSI:0:0"
DVD = "SCSI:0:1"
INSTALL_PREFIX = "BSDINSTALL_CONFIGCURRENT=yes bsdinstall script "


def unquote(value):
    """python-hcl2 keeps the quotes of string literals."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def block(blocks: list, *labels: str) -> dict:
    """The body of the block with these labels (python-hcl2 keeps their quotes too)."""
    for entry in blocks:
        body = entry
        for label in labels:
            body = body.get(f'"{label}"') if isinstance(body, dict) else None
        if body is not None:
            return body
    raise SystemExit(f"no block {' '.join(labels)} in the template")


def check(template: Path) -> list:
    with template.open() as f:
        doc = hcl2.load(f)
    errors = []
    source = block(doc.get("source", []), "hyperv-iso", "freebsd")

    first = unquote(source.get("first_boot_device"))
    if first != "DVD":
        errors.append(f"first_boot_device is {first!r}, not \"DVD\": the first boot must start the installer")
    order = [unquote(v) for v in source.get("boot_order", [])]
    malformed = [v for v in order if not re.fullmatch(r"SCSI:\d+:\d+", str(v))]
    if malformed:
        errors.append(f"boot_order entries {malformed} are not SCSI:x:y: the plugin drops them silently")
    if order != [DVD, DISK]:
        errors.append(f"boot_order is {order}, expected [{DVD!r}, {DISK!r}]: the DVD first, then the disk, nothing else")

    install = unquote(next((l["install_command"] for l in doc.get("locals", []) if "install_command" in l), None))
    if not (isinstance(install, str) and install.startswith(INSTALL_PREFIX)):
        errors.append(f"local.install_command is {install!r}: it must start with {INSTALL_PREFIX!r}, "
                      "or the installed system gets no UEFI boot entry and the DVD boots again")
    for build in doc.get("build", []):
        for entry in build.get("source", []):
            for body in entry.values():
                command = str(body.get("boot_command", ""))
                if "local.install_command" not in command:
                    errors.append(f"source {unquote(body.get('name'))}: boot_command does not type local.install_command")
    return errors


def main() -> int:
    here = Path(__file__).resolve().parent
    template = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parent / "packer/freebsd.pkr.hcl"
    errors = check(template)
    for error in errors:
        print(f"{template}: {error}")
    if errors:
        return 1
    print(f"{template}: DVD ({DVD}) then disk ({DISK}); the installed system gets its UEFI boot entry")
    return 0


if __name__ == "__main__":
    sys.exit(main())
