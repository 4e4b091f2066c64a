#!/usr/bin/env python3
"""Check a port Makefile against the Porter's Handbook variable order.

The order is the one of the Porter's Handbook chapter "Order of Variables
in Port Makefiles" (freebsd-doc: documentation/content/en/books/
porters-handbook/order/_index.adoc), which portlint and portclippy
(ports-mgmt/portfmt) enforce:

 1. PORTNAME block, 2. PATCHFILES block, 3. MAINTAINER block,
 4. LICENSE block, 5. BROKEN/IGNORE/ONLY_FOR_ARCHS block,
 6. dependencies, 7. FLAVORS, 8. USES and USE_* (GH_* after USE_GITHUB),
 9. the standard bsd.port.mk variables (any order),
10. OPTIONS_* then the *_DESC of the options, 11. option helpers,
12. targets, in the order the framework runs them.

Within blocks 1 to 7 and 10 the order is fixed; blocks are separated by
one blank line (comments may stand in between). Every variable must be
known here: an unknown one is an error, so the whole Makefile is checked,
not a subset. It also fails on a category listed twice, counting the
`kld` that USES=kmod adds itself (Mk/Uses/kmod.mk: CATEGORIES+= kld).

usage: makefile_order.py MAKEFILE...      check each Makefile
       makefile_order.py --self-test      prove each rule fails when broken
"""

import re
import sys

FIXED_BLOCKS = [
    ["PORTNAME", "PORTVERSION", "DISTVERSIONPREFIX", "DISTVERSION",
     "DISTVERSIONSUFFIX", "PORTREVISION", "PORTEPOCH", "CATEGORIES",
     "MASTER_SITES", "MASTER_SITE_SUBDIR", "PKGNAMEPREFIX", "PKGNAMESUFFIX",
     "DISTNAME", "EXTRACT_SUFX", "DISTFILES", "DIST_SUBDIR", "EXTRACT_ONLY"],
    ["PATCH_SITES", "PATCHFILES", "PATCH_DIST_STRIP"],
    ["MAINTAINER", "COMMENT", "WWW"],
    ["LICENSE", "LICENSE_COMB", "LICENSE_GROUPS", "LICENSE_NAME",
     "LICENSE_TEXT", "LICENSE_FILE", "LICENSE_PERMS", "LICENSE_DISTFILES"],
    ["DEPRECATED", "EXPIRATION_DATE", "FORBIDDEN", "BROKEN", "IGNORE",
     "ONLY_FOR_ARCHS", "ONLY_FOR_ARCHS_REASON", "NOT_FOR_ARCHS",
     "NOT_FOR_ARCHS_REASON"],
    ["FETCH_DEPENDS", "EXTRACT_DEPENDS", "PATCH_DEPENDS", "BUILD_DEPENDS",
     "LIB_DEPENDS", "RUN_DEPENDS", "TEST_DEPENDS"],
    ["FLAVORS", "FLAVOR"],
]
USES_BLOCK = len(FIXED_BLOCKS)          # USES, USE_*, GH_*
STANDARD_BLOCK = USES_BLOCK + 1         # any order
OPTIONS_BLOCK = STANDARD_BLOCK + 1      # OPTIONS_*, then *_DESC
HELPERS_BLOCK = OPTIONS_BLOCK + 1       # FOO_RUN_DEPENDS, ...

# bsd.port.mk and Uses/*.mk variables a port may set (block 9). Add to it
# when a port needs another one; the error message says so.
STANDARD = {
    "WRKSRC", "WRKSRC_SUBDIR", "NO_WRKSUBDIR", "BUILD_WRKSRC",
    "INSTALL_WRKSRC", "TEST_WRKSRC", "CONFIGURE_WRKSRC", "PATCH_WRKSRC",
    "MAKE_ENV", "MAKE_ARGS", "MAKE_JOBS_UNSAFE", "ALL_TARGET",
    "INSTALL_TARGET", "TEST_TARGET", "TEST_ENV", "CFLAGS", "LDFLAGS",
    "CONFIGURE_ARGS", "CONFIGURE_ENV", "PLIST", "PLIST_FILES", "PLIST_DIRS",
    "PLIST_SUB", "FILESDIR", "PATCHDIR", "SUB_FILES", "SUB_LIST", "PKGMESSAGE",
    "PORTDOCS", "PORTEXAMPLES", "PORTDATA", "USERS", "GROUPS", "KMODDIR",
    "NO_ARCH", "NO_BUILD", "NO_INSTALL", "SHEBANG_FILES", "CONFLICTS",
    "CONFLICTS_INSTALL", "SSP_UNSAFE", "LTO_UNSAFE",
}
STANDARD_PREFIXES = ("CARGO_",)
OPTIONS_FIXED = ["OPTIONS_DEFINE", "OPTIONS_DEFINE_", "OPTIONS_DEFAULT",
                 "OPTIONS_DEFAULT_", "OPTIONS_GROUP", "OPTIONS_MULTI",
                 "OPTIONS_RADIO", "OPTIONS_SINGLE", "OPTIONS_EXCLUDE",
                 "OPTIONS_SLAVE", "NO_OPTIONS_SORT", "OPTIONS_SUB"]
# Option helpers (bsd.options.mk): FOO_<suffix> for an option FOO.
HELPER_SUFFIXES = ("_BUILD_DEPENDS", "_RUN_DEPENDS", "_LIB_DEPENDS",
                   "_USES", "_CARGO_FEATURES", "_PLIST_FILES", "_PLIST_SUB",
                   "_CONFIGURE_ON", "_CONFIGURE_OFF", "_MAKE_ENV",
                   "_SUB_LIST", "_EXTRA_PATCHES", "_IMPLIES", "_PREVENTS")
STAGES = ["fetch", "extract", "patch", "configure", "build", "install",
          "test"]


def rank(name, options):
    """(block, position) of a variable; position None = any order."""
    for block, names in enumerate(FIXED_BLOCKS):
        for position, known in enumerate(names):
            if name == known or (known.endswith("_REASON") and name.startswith(known)):
                return block, position
            if known in ("BROKEN", "IGNORE") and name.startswith(known + "_"):
                return block, position
    if name == "USES":
        return USES_BLOCK, 0
    if name.startswith("USE_") or name.startswith("GH_") or name.startswith("GL_"):
        return USES_BLOCK, 1
    for position, known in enumerate(OPTIONS_FIXED):
        if name == known or (known.endswith("_") and name.startswith(known)):
            return OPTIONS_BLOCK, position
    if name.endswith("_DESC") and name[:-5] in options:
        return OPTIONS_BLOCK, len(OPTIONS_FIXED)
    if any(name == o + s for o in options for s in HELPER_SUFFIXES):
        return HELPERS_BLOCK, None
    if name in STANDARD or name.startswith(STANDARD_PREFIXES):
        return STANDARD_BLOCK, None
    return None


def target_rank(target):
    """Position of a target in the order the framework runs them."""
    m = re.match(r"^(pre|do|post)-(\w+?)(-.*)?$", target)
    if not m or m.group(2) not in STAGES:
        return None
    return STAGES.index(m.group(2)), ["pre", "do", "post"].index(m.group(1)), m.group(3) or ""


def logical_lines(text):
    """(line number, text) with continuation lines joined."""
    number, buffer, start = 0, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        yield start, buffer + line
        buffer = ""


def check(text, path="Makefile"):
    """A list of error strings for one Makefile's text."""
    errors = []
    assignments = []
    targets = []
    blank_before = True
    for number, line in logical_lines(text):
        if not line.strip():
            blank_before = True
            continue
        if line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_.]*)\s*[+?:!]?=\s*(.*)$", line)
        if m:
            assignments.append((number, m.group(1), m.group(2).split(), blank_before))
        elif re.match(r"^[a-z][\w-]*:", line):
            targets.append((number, line.split(":", 1)[0]))
        blank_before = False

    values = {name: value for _, name, value, _ in assignments}
    # Options of every architecture too (OPTIONS_DEFINE_amd64=, bsd.options.mk).
    options = {option for name, value in values.items()
               if name == "OPTIONS_DEFINE" or name.startswith("OPTIONS_DEFINE_")
               for option in value}
    last = None
    last_name = None
    for number, name, value, blank in assignments:
        where = f"{path}:{number}"
        r = rank(name, options)
        if r is None:
            errors.append(f"{where}: {name} is not in the known variable order "
                          "(port/makefile_order.py); add it where the Porter's Handbook puts it")
            continue
        if last is not None:
            if r[0] < last[0] or (r[0] == last[0] and r[1] is not None
                                  and last[1] is not None and r[1] < last[1]):
                errors.append(f"{where}: {name} belongs before {last_name} "
                              "(Porter's Handbook order)")
            elif r[0] != last[0] and not blank:
                errors.append(f"{where}: {name} starts a new block: "
                              "put one blank line before it")
            elif r[0] == last[0] and blank and r[0] < STANDARD_BLOCK:
                errors.append(f"{where}: {name} belongs to the block of "
                              f"{last_name}: no blank line between them")
        if name.startswith("GH_") and "USE_GITHUB" not in values:
            errors.append(f"{where}: {name} without USE_GITHUB")
        last, last_name = r, name

    for required in ("PORTNAME", "CATEGORIES", "MAINTAINER", "COMMENT", "WWW",
                     "LICENSE", "USES"):
        if required not in values:
            errors.append(f"{path}: {required} is missing")
    if "DISTVERSION" not in values and "PORTVERSION" not in values:
        errors.append(f"{path}: DISTVERSION (or PORTVERSION) is missing")

    categories = list(values.get("CATEGORIES", []))
    if "kmod" in values.get("USES", []):
        categories.append("kld")  # Mk/Uses/kmod.mk adds it
    seen = set()
    for category in categories:
        if category in seen:
            errors.append(f"{path}: category {category} is listed twice"
                          + (" (USES=kmod adds kld itself)" if category == "kld" else ""))
        seen.add(category)

    last_target, last_target_name = None, None
    last_variable_line = max((n for n, *_ in assignments), default=0)
    for number, target in targets:
        if number < last_variable_line:
            errors.append(f"{path}:{number}: target {target} comes before variables; "
                          "targets go last")
        t = target_rank(target)
        if t is None:
            continue
        if last_target is not None and t < last_target:
            errors.append(f"{path}:{number}: target {target} belongs before "
                          f"{last_target_name} (the order the framework runs them)")
        last_target, last_target_name = t, target
    return errors


GOOD = """PORTNAME=	x
DISTVERSION=	1
CATEGORIES=	sysutils

MAINTAINER=	ports@FreeBSD.org
COMMENT=	X
WWW=		https://example.org

LICENSE=	BSD2CLAUSE

USES=		cargo kmod
USE_GITHUB=	yes
GH_ACCOUNT=	x

CARGO_BUILD=	no
PLIST_FILES=	x

OPTIONS_DEFINE=	EXAMPLES KMOD
KMOD_DESC=	k

KMOD_RUN_DEPENDS=	x:y/z

post-install:
	true

post-install-EXAMPLES-on:
	true

.include <bsd.port.mk>
"""


# An option of one architecture has its *_DESC and helpers like any other.
GOOD_ARCH_OPTION = GOOD.replace(
    "OPTIONS_DEFINE=\tEXAMPLES KMOD\n",
    "OPTIONS_DEFINE=\tEXAMPLES\nOPTIONS_DEFINE_amd64=\tKMOD\nOPTIONS_DEFAULT_amd64=\tKMOD\n")


def self_test():
    """Each rule must fire on a Makefile that breaks it, and not on GOOD."""
    assert check(GOOD) == [], check(GOOD)
    assert GOOD_ARCH_OPTION != GOOD
    assert check(GOOD_ARCH_OPTION) == [], check(GOOD_ARCH_OPTION)
    broken = {
        "duplicate kld": GOOD.replace("CATEGORIES=\tsysutils", "CATEGORIES=\tsysutils kld"),
        "duplicate category": GOOD.replace("CATEGORIES=\tsysutils", "CATEGORIES=\tsysutils sysutils"),
        "order in block": GOOD.replace("MAINTAINER=\tports@FreeBSD.org\nCOMMENT=\tX",
                                       "COMMENT=\tX\nMAINTAINER=\tports@FreeBSD.org"),
        "order of blocks": GOOD.replace("LICENSE=\tBSD2CLAUSE\n\n", "") .replace(
            "CARGO_BUILD=\tno\n", "CARGO_BUILD=\tno\n\nLICENSE=\tBSD2CLAUSE\n"),
        "missing blank line": GOOD.replace("CATEGORIES=\tsysutils\n\n", "CATEGORIES=\tsysutils\n"),
        "blank inside a block": GOOD.replace("COMMENT=\tX\n", "COMMENT=\tX\n\n"),
        "unknown variable": GOOD.replace("PLIST_FILES=\tx", "PLIST_FILES=\tx\nFROB=\t1"),
        "target order": GOOD.replace("post-install:\n\ttrue\n\npost-install-EXAMPLES-on:",
                                     "post-install-EXAMPLES-on:\n\ttrue\n\npre-build:"),
        "variable after target": GOOD.replace(".include", "PLIST_SUB=\tA=b\n.include"),
        "missing WWW": GOOD.replace("WWW=\t\thttps://example.org\n", ""),
        "options order": GOOD.replace("OPTIONS_DEFINE=\tEXAMPLES KMOD\nKMOD_DESC=\tk",
                                      "KMOD_DESC=\tk\nOPTIONS_DEFINE=\tEXAMPLES KMOD"),
        "arch options order": GOOD_ARCH_OPTION.replace(
            "OPTIONS_DEFINE_amd64=\tKMOD\nOPTIONS_DEFAULT_amd64=\tKMOD",
            "OPTIONS_DEFAULT_amd64=\tKMOD\nOPTIONS_DEFINE_amd64=\tKMOD"),
    }
    for what, text in broken.items():
        assert check(text), f"self-test: {what} was not caught"
    print(f"makefile_order: self-test: {len(broken)} broken Makefiles caught, the good ones pass")


def main(argv):
    if argv[1:] == ["--self-test"]:
        self_test()
        return 0
    failed = 0
    for path in argv[1:]:
        errors = check(open(path, encoding="utf-8").read(), path)
        for error in errors:
            print(f"port: {error}", file=sys.stderr)
        if errors:
            failed = 1
        else:
            print(f"port: {path}: Porter's Handbook order, blocks, targets and categories ok")
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv))
