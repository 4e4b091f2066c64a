"""Static checks of a PowerShell script without PowerShell.

No registry this project can reach ships pwsh (npm's `pwsh` package
downloads it from GitHub at install time), so CI parses the script with
tree-sitter's PowerShell grammar (PyPI: tree-sitter, tree-sitter-powershell)
and fails on:

  - any ERROR or MISSING node (unbalanced braces, parentheses or quotes,
    broken strings, misplaced keywords, bad operators), with line and column;
  - a command that is neither a function of the script nor listed in the
    allowlist (ci/ps-commands.txt), e.g. a misspelt cmdlet;
  - a named parameter the called function does not declare, or that the
    allowlist does not list for that cmdlet;
  - a function the script defines but never calls.

What only PowerShell itself knows stays unchecked: parameter sets and
types, strict-mode violations at run time, the behaviour of the cmdlets.

usage: python3 ps_check.py [--commands ALLOWLIST] FILE.ps1
"""

import argparse
import sys
from pathlib import Path

import tree_sitter_powershell
from tree_sitter import Language, Parser

POWERSHELL = Language(tree_sitter_powershell.language())

# about_CommonParameters, plus the risk-mitigation parameters.
COMMON = {
    "verbose", "debug", "erroraction", "warningaction", "informationaction",
    "progressaction", "errorvariable", "warningvariable", "informationvariable",
    "outvariable", "outbuffer", "pipelinevariable", "whatif", "confirm",
}


def text(source: bytes, node) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", "replace")


def child(node, kind):
    return next((c for c in node.children if c.type == kind), None)


def walk(node):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def syntax_errors(source: bytes, root):
    for node in walk(root):
        row, col = node.start_point
        if node.is_missing:
            yield row + 1, col + 1, f"missing {node.type!r}"
        elif node.is_error:
            first = (text(source, node).splitlines() or [""])[0]
            yield row + 1, col + 1, f"cannot parse: {first[:80]!r}"


def functions(source: bytes, root) -> dict:
    """Function name (lower case) -> (line, set of parameter names, lower case)."""
    found = {}
    for node in walk(root):
        if node.type != "function_statement":
            continue
        name = text(source, child(node, "function_name"))
        params = set()
        for sub in walk(node):
            # Only this function's own parameters, not those of nested blocks.
            owner = _owner(sub) if sub.type == "script_parameter" else None
            if owner is not None and owner.id == node.id:
                variable = child(sub, "variable")
                if variable is not None:
                    params.add(text(source, variable).lstrip("$").lower())
        found[name.lower()] = (node.start_point[0] + 1, params)
    return found


def _owner(node):
    """The function_statement a script_parameter belongs to."""
    n = node.parent
    while n is not None and n.type != "function_statement":
        if n.type == "script_block_expression":
            return None
        n = n.parent
    return n


def calls(source: bytes, root):
    """(line, command name, [named parameters]) for every command with a literal name."""
    for node in walk(root):
        if node.type != "command":
            continue
        name = child(node, "command_name")
        if name is None:
            continue  # & $FilePath ...: a computed name
        params = []
        elements = child(node, "command_elements")
        if elements is not None:
            for element in elements.children:
                if element.type == "command_parameter":
                    params.append(text(source, element).lstrip("-").rstrip(":").lower())
        yield node.start_point[0] + 1, text(source, name), params


def read_allowlist(path: Path) -> dict:
    allowed = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, *params = line.split()
        allowed[name.lower()] = {p.lstrip("-").lower() for p in params}
    return allowed


def check(path: Path, allowlist: Path) -> list:
    source = path.read_bytes()
    root = Parser(POWERSHELL).parse(source).root_node
    problems = [f"{path}:{line}:{col}: {what}" for line, col, what in sorted(set(syntax_errors(source, root)))]
    if problems:
        return problems  # the tree is unreliable past a syntax error
    defined = functions(source, root)
    allowed = read_allowlist(allowlist)
    called = set()
    for line, name, params in calls(source, root):
        key = name.lower()
        if key in defined:
            called.add(key)
            known = defined[key][1]
            where = f"function {name} (line {defined[key][0]})"
        elif key in allowed:
            known = allowed[key]
            where = f"{allowlist.name} for {name}"
        else:
            problems.append(f"{path}:{line}: unknown command {name}: define it, or check the cmdlet "
                            f"reference and add it to {allowlist}")
            continue
        for param in params:
            if param not in known and param not in COMMON:
                problems.append(f"{path}:{line}: {name} -{param}: not a parameter of {where}")
    for key, (line, _) in sorted(defined.items()):
        if key not in called:
            problems.append(f"{path}:{line}: function {key} is defined but never called")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=Path, default=Path(__file__).with_name("ps-commands.txt"))
    parser.add_argument("scripts", type=Path, nargs="+")
    args = parser.parse_args()
    failed = False
    for script in args.scripts:
        problems = check(script, args.commands)
        for problem in problems:
            print(problem)
        if problems:
            failed = True
        else:
            print(f"{script}: parsed; every command and named parameter is known; every function is used")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
