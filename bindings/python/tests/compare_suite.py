"""Compares proto_db suite runs (JUnit XML from pytest --junitxml): pass
counts per variant, and every test that passes on the reference's storage
but not on protobase's.

    python compare_suite.py REFERENCE.xml VARIANT=RUN.xml [...] [--allow known_differences.txt]

Exits 1 when a test passes on the reference but fails on a protobase variant
and is not listed in the allow file (lines ``variant test-id  # reason``,
variant ``*`` for all). Prints ``N passed, N failed`` per run and a final
count of regressions.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def outcomes(path: Path) -> dict:
    tree = ET.parse(path)
    result = {}
    for case in tree.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed"
            elif child.tag == "skipped":
                status = "skipped"
        result[name] = status
    return result


def counts(res: dict) -> str:
    c = {k: 0 for k in ("passed", "failed", "skipped")}
    for v in res.values():
        c[v] += 1
    return f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"


def load_allow(path: Path | None) -> dict:
    allow: dict = {}
    if path is None or not path.exists():
        return allow
    for line in path.read_text().splitlines():
        body, _, reason = line.partition("#")
        parts = body.split()
        if len(parts) == 2:
            allow[(parts[0], parts[1])] = reason.strip()
    return allow


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("reference", type=Path)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--allow", type=Path)
    args = ap.parse_args()
    ref = outcomes(args.reference)
    allow = load_allow(args.allow)
    print(f"{'run':<28} result (tests that ran in both)")
    unexpected = 0
    for spec in args.runs:
        variant, _, path = spec.partition("=")
        run = outcomes(Path(path))
        ref_same = {k: v for k, v in ref.items() if k in run}
        print(f"{'reference (same tests)':<28} {counts(ref_same)}")
        print(f"{'protobase ' + variant:<28} {counts(run)}")
        for name, status in sorted(run.items()):
            if ref.get(name) == "passed" and status != "passed":
                reason = allow.get((variant, name)) or allow.get(("*", name))
                if reason:
                    print(f"  known: {variant} {name}: {reason}")
                else:
                    print(f"  REGRESSION: {variant} {name} passes on the reference, {status} on protobase")
                    unexpected += 1
            elif status == "passed" and ref.get(name) == "failed":
                print(f"  fixed: {variant} {name} fails on the reference, passes on protobase")
    print(f"regressions against the reference: {unexpected}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
