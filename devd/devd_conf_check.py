#!/usr/bin/env python3
"""Parse devd.conf(5) files the way devd(8) reads them and check our rule.

There is no devd on Linux, so this is a small real parser of the devd.conf
grammar (statements `options`, `attach`, `detach`, `nomatch`, `notify`
with a priority and a body of `match "var" "regex";`, `device-name`,
`media-type`, `class`, `subdevice`, `action "command";`; `#`, `//` and
`/* */` comments; every statement ends in `;`), plus devd's dispatch rule:
for an event, only the highest-priority matching statement runs, and a
`match` regex is anchored at both ends.

usage: devd_conf_check.py [--rule RULE [--prefix PREFIX]] [FILE...]
           parse each FILE; with --rule, check that RULE (hyperv-vss's rule
           as installed, %%PREFIX%% substituted; default prefix /usr/local)
           wins over the base rule and runs our rc.d script
       devd_conf_check.py --self-test
"""

import re
import sys

KEYWORDS = {"options", "attach", "detach", "nomatch", "notify"}
SUB_STATEMENTS = {"match", "device-name", "media-type", "class", "subdevice", "action",
                  "directory", "pid-file", "set"}


class ParseError(Exception):
    pass


def tokenize(text, name):
    tokens = []
    i, line = 0, 1
    while i < len(text):
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#" or text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ParseError(f"{name}:{line}: unterminated /* comment")
            line += text.count("\n", i, end)
            i = end + 2
        elif c in "{};":
            tokens.append((c, c, line))
            i += 1
        elif c == '"':
            j, value = i + 1, []
            while j < len(text) and text[j] != '"':
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                if text[j] == "\n":
                    raise ParseError(f"{name}:{line}: newline inside a string")
                value.append(text[j])
                j += 1
            if j >= len(text):
                raise ParseError(f"{name}:{line}: unterminated string")
            tokens.append(("string", "".join(value), line))
            i = j + 1
        else:
            m = re.match(r"[A-Za-z0-9_.\-]+", text[i:])
            if not m:
                raise ParseError(f"{name}:{line}: unexpected character {c!r}")
            word = m.group(0)
            tokens.append(("number" if word.isdigit() else "word", word, line))
            i += len(word)
    return tokens


def parse(text, name="<text>"):
    """Returns a list of statements: {kind, priority, matches: [(var, regex)], actions, line}."""
    tokens = tokenize(text, name)
    pos = 0

    def take(kind=None, value=None):
        nonlocal pos
        if pos >= len(tokens):
            raise ParseError(f"{name}: unexpected end of file (missing '}}' or ';'?)")
        tok = tokens[pos]
        if (kind and tok[0] != kind) or (value and tok[1] != value):
            want = value or kind
            raise ParseError(f"{name}:{tok[2]}: expected {want}, found {tok[1]!r}")
        pos += 1
        return tok

    statements = []
    while pos < len(tokens):
        keyword = take("word")
        if keyword[1] not in KEYWORDS:
            raise ParseError(f"{name}:{keyword[2]}: unknown statement {keyword[1]!r}")
        statement = {"kind": keyword[1], "priority": 0, "matches": [], "actions": [], "line": keyword[2]}
        if keyword[1] != "options":
            statement["priority"] = int(take("number")[1])
        take("{")
        while tokens[pos][0] != "}":
            sub = take("word")
            if sub[1] not in SUB_STATEMENTS:
                raise ParseError(f"{name}:{sub[2]}: unknown sub-statement {sub[1]!r}")
            args = []
            while pos < len(tokens) and tokens[pos][0] in ("string", "word", "number"):
                args.append(take()[1])
            take(";")
            if sub[1] == "match":
                if len(args) != 2:
                    raise ParseError(f"{name}:{sub[2]}: match takes a variable and a regex")
                try:
                    re.compile(args[1])
                except re.error as e:
                    raise ParseError(f"{name}:{sub[2]}: bad regex {args[1]!r}: {e}")
                statement["matches"].append((args[0], args[1]))
            elif sub[1] == "action":
                if len(args) != 1 or not args[0].strip():
                    raise ParseError(f"{name}:{sub[2]}: action takes one non-empty command string")
                statement["actions"].append(args[0])
            if pos >= len(tokens):
                raise ParseError(f"{name}: unexpected end of file inside a statement")
        take("}")
        take(";")
        statements.append(statement)
    return statements


def dispatch(statements, event, kind="notify"):
    """devd runs only the first match in descending priority order."""
    candidates = sorted((s for s in statements if s["kind"] == kind), key=lambda s: -s["priority"])
    for s in candidates:
        if all(re.fullmatch(regex, event.get(var, "")) for var, regex in s["matches"]):
            return s
    return None


# The base system's VSS rules in /etc/devd/hyperv.conf (freebsd-src
# sbin/devd/hyperv.conf, 14.x and 15.x), transcribed for the dispatch check.
BASE_RULES = """
notify 11 {
	match "system"		"DEVFS";
	match "subsystem"	"CDEV";
	match "type"		"CREATE";
	match "cdev"		"hv_fsvss_dev";
	action "/usr/sbin/hv_vss_daemon";
};
notify 11 {
	match "system"		"DEVFS";
	match "subsystem"	"CDEV";
	match "type"		"DESTROY";
	match "cdev"		"hv_fsvss_dev";
	action "pkill -x hv_vss_daemon";
};
"""


def check_ours(statements, name, prefix):
    both = statements + parse(BASE_RULES, "base hyperv.conf")
    # "quietstart devd": the rc.d script starts the daemon unless
    # hv_vssd_enable="NO" (files/hv_vssd.in); onestop stops it regardless.
    expect = {"CREATE": f"{prefix}/etc/rc.d/hv_vssd quietstart devd",
              "DESTROY": f"{prefix}/etc/rc.d/hv_vssd onestop"}
    for event_type, action in expect.items():
        event = {"system": "DEVFS", "subsystem": "CDEV", "type": event_type, "cdev": "hv_fsvss_dev"}
        winner = dispatch(both, event)
        if winner is None or winner["actions"] != [action] or winner["priority"] != 12:
            sys.exit(f"{name}: for {event_type} of hv_fsvss_dev devd would run {winner and winner['actions']}, expected {action!r} at priority 12")
        other = dispatch(both, dict(event, cdev="hv_appvss_dev"))
        if other is not None:
            sys.exit(f"{name}: a rule also fires for hv_appvss_dev: {other['actions']}")
    print(f"devd: {name}: CREATE/DESTROY of hv_fsvss_dev run our rc.d script at priority 12, over the base rule (11)")


def self_test():
    good = parse('notify 5 { match "a" "b|c"; action "x"; }; options { directory "/d"; };')
    assert len(good) == 2 and good[0]["priority"] == 5
    assert dispatch(good, {"a": "c"})["actions"] == ["x"]
    assert dispatch(good, {"a": "bc"}) is None, "regexes are anchored"
    broken = {
        'notify 5 { match "a" "b"; action "x"; }': "unexpected end of file",  # no ';' after '}'
        'notify 5 { match "a" "b" action "x"; };': "match takes",
        'notify 5 { match "a" "b; };': "unterminated string",
        'notify { action "x"; };': "expected number",
        'notyfy 5 { action "x"; };': "unknown statement",
        'notify 5 { match "a" "(b"; };': "bad regex",
        'notify 5 { acton "x"; };': "unknown sub-statement",
        'notify 5 { action ""; };': "non-empty",
    }
    for text, message in broken.items():
        try:
            parse(text)
        except ParseError as e:
            assert message in str(e), (text, str(e))
        else:
            raise AssertionError(f"accepted broken input: {text}")
    print(f"devd: parser self-test passed ({len(broken)} broken inputs rejected)")


def parse_file(path):
    text = open(path, encoding="utf-8").read()
    if "%%" in text:
        sys.exit(f"devd: {path}: an unsubstituted %%KEY%% is left")
    try:
        statements = parse(text, path)
    except ParseError as e:
        sys.exit(f"devd: {e}")
    print(f"devd: {path}: {len(statements)} statements parse")
    return statements


def main():
    args = sys.argv[1:]
    if args == ["--self-test"] or not args:
        self_test()
        return
    rule, prefix = None, "/usr/local"
    if "--rule" in args:
        at = args.index("--rule")
        rule = args[at + 1]
        del args[at:at + 2]
    if "--prefix" in args:
        at = args.index("--prefix")
        prefix = args[at + 1]
        del args[at:at + 2]
    for path in args:
        parse_file(path)
    if rule:
        check_ours(parse_file(rule), rule, prefix)


if __name__ == "__main__":
    main()
