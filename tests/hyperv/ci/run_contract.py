"""What run.ps1 promises, checked in its syntax tree (tree-sitter).

ps_check.py proves run.ps1 parses and calls only known commands; this
checks three promises of the README that a refactoring could break
silently, without PowerShell:

  exit status  $ExitStatus is @{ Passed = 0; ScenarioFailed = 1;
               SetupFailed = 2 } as README.md documents, and the script's
               only `exit` is `exit (Get-ExitStatus)`;
  setup phase  `vagrant up` runs only in Start-TestVM, and every call of
               Start-TestVM sits in a try whose catch records an
               `Add-Result -Phase setup` row (so a failed `vagrant up` yields
               exit status 2, not 1);
  VSS first    Wait-VssIntegration asks Get-VMIntegrationService -Name VSS
               and tests .Enabled and .PrimaryOperationalStatus; Start-TestVM
               calls it after `vagrant up`, and every function that starts
               the VM again (Start-VM) calls it afterwards, before any
               checkpoint can be blamed on the guest.

usage: python3 run_contract.py [RUN_PS1]
"""

import sys
from pathlib import Path

from ps_check import POWERSHELL, child, text, walk
from tree_sitter import Parser

EXIT_STATUS = {"Passed": 0, "ScenarioFailed": 1, "SetupFailed": 2}


class Script:
    """run.ps1 parsed once, with the lookups the rules need."""

    def __init__(self, path: Path):
        self.source = path.read_bytes()
        self.root = Parser(POWERSHELL).parse(self.source).root_node

    def text(self, node) -> str:
        return text(self.source, node)

    def function(self, name: str):
        for node in walk(self.root):
            if node.type == "function_statement" and self.text(child(node, "function_name")).lower() == name.lower():
                return node
        return None

    def commands(self, within=None):
        """(node, lower-case name) of every command with a literal name."""
        for node in walk(within or self.root):
            name = child(node, "command_name") if node.type == "command" else None
            if name is not None:
                yield node, self.text(name).lower()

    def enclosing(self, node, kind: str):
        n = node.parent
        while n is not None and n.type != kind:
            n = n.parent
        return n


def is_vagrant_up(script: Script, command) -> bool:
    words = script.text(command).replace('"', "'")
    return "'vagrant'" in words and "@('up'" in words


def check_exit_status(script: Script) -> list:
    errors = []
    table = None
    for node in walk(script.root):
        if node.type == "assignment_expression" and script.text(node).startswith("$ExitStatus ="):
            table = next((n for n in walk(node) if n.type == "hash_literal_expression"), None)
    if table is None:
        return ["no `$ExitStatus = @{ ... }` table"]
    entries = {}
    for entry in walk(table):
        if entry.type == "hash_entry":
            key = script.text(child(entry, "key_expression"))
            value = script.text(child(entry, "pipeline"))
            entries[key] = int(value) if value.isdigit() else value
    if entries != EXIT_STATUS:
        errors.append(f"$ExitStatus is {entries}, README.md documents {EXIT_STATUS}")
    exits = [script.text(n) for n in walk(script.root) if n.type == "flow_control_statement" and script.text(n).startswith("exit")]
    if exits != ["exit (Get-ExitStatus)"]:
        errors.append(f"the exit statements are {exits}: the only one must be `exit (Get-ExitStatus)`")
    return errors


def check_setup_phase(script: Script) -> list:
    errors = []
    for command, _ in script.commands():
        if is_vagrant_up(script, command):
            function = script.enclosing(command, "function_statement")
            owner = script.text(child(function, "function_name")) if function else "the main script"
            if owner != "Start-TestVM":
                errors.append(f"`vagrant up` runs in {owner}, not in Start-TestVM (line {command.start_point[0] + 1})")
    calls = [c for c, name in script.commands() if name == "start-testvm"]
    if not calls:
        errors.append("Start-TestVM is never called")
    for call in calls:
        attempt = script.enclosing(call, "try_statement")
        clauses = child(attempt, "catch_clauses") if attempt else None
        records = [
            script.text(c) for c, name in script.commands(clauses) if name == "add-result"
        ] if clauses else []
        if not any("-Phase setup" in r for r in records):
            errors.append(f"line {call.start_point[0] + 1}: Start-TestVM is not in a try whose catch records "
                          "`Add-Result -Phase setup` (a failed vagrant up must give exit status 2)")
    return errors


def check_vss_first(script: Script) -> list:
    errors = []
    wait = script.function("Wait-VssIntegration")
    if wait is None:
        return ["no function Wait-VssIntegration"]
    body = script.text(wait)
    asks = [script.text(c) for c, name in script.commands(wait) if name == "get-vmintegrationservice"]
    if not any("-Name 'VSS'" in a for a in asks):
        errors.append("Wait-VssIntegration does not ask Get-VMIntegrationService -Name 'VSS'")
    for needed in (".Enabled", ".PrimaryOperationalStatus -eq 'Ok'"):
        if needed not in body:
            errors.append(f"Wait-VssIntegration does not test {needed}")
    start = script.function("Start-TestVM")
    if start is not None:
        ups = [c.start_byte for c, _ in script.commands(start) if is_vagrant_up(script, c)]
        waits = [c.start_byte for c, name in script.commands(start) if name == "wait-vssintegration"]
        if not ups or not waits or min(waits) < min(ups):
            errors.append("Start-TestVM does not call Wait-VssIntegration after `vagrant up`")
    for node in walk(script.root):
        if node.type != "function_statement":
            continue
        starts = [c.start_byte for c, name in script.commands(node) if name == "start-vm"]
        waits = [c.start_byte for c, name in script.commands(node) if name == "wait-vssintegration"]
        if starts and not any(w > max(starts) for w in waits):
            errors.append(f"{script.text(child(node, 'function_name'))} starts the VM but does not call "
                          "Wait-VssIntegration afterwards")
    return errors


def main() -> int:
    here = Path(__file__).resolve().parent
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parent / "run.ps1"
    script = Script(path)
    errors = check_exit_status(script) + check_setup_phase(script) + check_vss_first(script)
    for error in errors:
        print(f"{path}: {error}")
    if errors:
        return 1
    print(f"{path}: exit status as documented; a failed vagrant up is a setup failure; "
          "the VSS integration service is checked after every boot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
