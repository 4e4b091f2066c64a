"""The FreeBSD guest never gets a CR from a Windows checkout.

Git for Windows checks files out with core.autocrlf=true; the guest reads
files from that checkout (installerconfig served by Packer, guest/*.sh and
expected-files uploaded) and a `git archive` of it (the whole tree, for the
kernel module's port). Two checks, on the committed tree of REPO:

  1. checkout: a clone made with core.autocrlf=true, as on Windows, has no
     text file with a CR (`git ls-files --eol`: w/crlf or w/mixed), so
     .gitattributes covers everything the guest reads;
  2. archive: in a clone without .gitattributes (an older commit, or one
     whose attributes were lost) and with core.autocrlf=true, `git archive`
     run with the options run.ps1 uses ($GitArchiveOptions) writes no CR
     into any text member.

Also checks that run.ps1 is ASCII: Windows PowerShell 5.1 reads a script
without a byte order mark in the ANSI code page, so anything else would be
misread.

usage: python3 check_line_endings.py [--repo DIR] [--run-ps1 FILE]
"""

import argparse
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


class Failure(Exception):
    """What the guest would get wrong; the message says what to fix."""


def git(*args: str, cwd: Path, binary: bool = False):
    out = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)
    return out.stdout if binary else out.stdout.decode()


def windows_clone(repo: Path, into: Path) -> Path:
    """A clone of REPO's HEAD as Git for Windows makes it (core.autocrlf=true)."""
    git("clone", "-q", "-c", "core.autocrlf=true", str(repo), str(into), cwd=repo.parent)
    return into


def crlf_files(checkout: Path) -> list:
    """Text files of a checkout whose working copy has CR line endings."""
    bad = []
    for line in git("ls-files", "--eol", cwd=checkout).splitlines():
        fields, _, path = line.partition("\t")
        index, worktree = fields.split()[:2]
        if index != "i/-text" and worktree in ("w/crlf", "w/mixed"):
            bad.append(path)
    return bad


def archive_options(run_ps1: Path) -> list:
    """The git options of run.ps1's `$GitArchiveOptions = @('...', ...)` line."""
    m = re.search(r"^\$GitArchiveOptions = @\((.*)\)\s*$", run_ps1.read_text(), re.MULTILINE)
    if m is None:
        raise Failure(f"{run_ps1}: no $GitArchiveOptions = @(...) line (the archive step's git options)")
    return re.findall(r"'([^']*)'", m.group(1))


def archived_crlf(checkout: Path, options: list) -> list:
    """Members of `git OPTIONS archive HEAD` that git treats as text and that hold a CR."""
    tar = git(*options, "archive", "--format=tar", "HEAD", cwd=checkout, binary=True)
    text = set(git("grep", "-I", "--name-only", "-e", "", "HEAD", cwd=checkout).replace("HEAD:", "").split())
    bad = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name in text and b"\r" in archive.extractfile(member).read():
                bad.append(member.name)
    return bad


def without_attributes(checkout: Path) -> None:
    """Commit the removal of .gitattributes and check the tree out anew."""
    if (checkout / ".gitattributes").exists():
        git("rm", "-q", ".gitattributes", cwd=checkout)
        git("-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", "no attributes", cwd=checkout)


def check(repo: Path, run_ps1: Path) -> None:
    non_ascii = [n for n, line in enumerate(run_ps1.read_bytes().splitlines(), 1) if max(line, default=0) > 0x7F]
    if non_ascii:
        raise Failure(f"{run_ps1}: non-ASCII bytes on lines {non_ascii}: Windows PowerShell 5.1 would misread them")
    options = archive_options(run_ps1)
    with tempfile.TemporaryDirectory() as tmp:
        checkout = windows_clone(repo, Path(tmp) / "win")
        bad = crlf_files(checkout)
        if bad:
            raise Failure(f"a core.autocrlf=true checkout has CRLF in {len(bad)} text files the guest reads, "
                          f"e.g. {bad[:5]}: .gitattributes must give them eol=lf")
        print(f"ok: a core.autocrlf=true checkout has LF in all {len(git('ls-files', cwd=checkout).split())} files")
        without_attributes(checkout)
        bad = archived_crlf(checkout, options)
        if bad:
            raise Failure(f"`git {' '.join(options)} archive` of a commit without .gitattributes, core.autocrlf=true, "
                          f"writes CRLF into {len(bad)} files, e.g. {bad[:5]}: fix $GitArchiveOptions in {run_ps1}")
        print(f"ok: `git {' '.join(options)} archive` writes LF even with core.autocrlf=true and no .gitattributes")


def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=here.parents[2])
    parser.add_argument("--run-ps1", type=Path, default=here.parent / "run.ps1")
    args = parser.parse_args()
    try:
        check(args.repo.resolve(), args.run_ps1)
    except Failure as e:
        print(f"LINE ENDINGS: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
