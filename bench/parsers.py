#!/usr/bin/env python3
"""The apache2 parser: usual lines per second, and pathological lines in time linear in their size.

  usual     bench/logs.py's access lines (LINES of them), parsed by shipyard's
            parser and by the baseline, the dispatch it replaced: fluentd's
            expression for lines with a backslash, a faster expression of the
            same meaning for the rest (both backtracking)
  patho.    the lines of tests/logs/test_logs_parsers.py:pathological() with
            about 10,000 backslashes (torn and whole); the baseline only at
            sizes it survives, to show its growth

Goals: a 10,000-backslash line parses within 50 ms; usual lines cost at most
10% more CPU than the baseline. Timings are process CPU, best of REPEAT runs.

Usage: bench/parsers.py [--lines 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from logs import HOST, access_line  # bench/logs.py, this directory
from shipyard_logs import parsers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "logs"))
from test_logs_parsers import pathological

# The expression shipyard used for lines without a backslash before the
# linear parser: the baseline for usual lines.
BASELINE_NO_ESCAPES = re.compile(
    r"^(?P<host>[^ ]*) [^ ]* (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "
    r'"(?P<method>\S+)(?: +(?P<path>[^" ]*+(?> +[^" ]+)*?)(?: +\S*)?)?" '
    r"(?P<code>[^ ]*) (?P<size>[^ ]*)"
    r'(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")?$'
)
GOAL_SECONDS = 0.050
GOAL_USUAL_RATIO = 1.10


def baseline_groups(line: str) -> tuple | None:
    match = (parsers.APACHE2 if "\\" in line else BASELINE_NO_ESCAPES).match(line)
    return match and match.groups()


def cpu(func: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        func()
        best = min(best, time.process_time() - started)
    return best


def usual(lines: int, repeat: int) -> tuple[float, float]:
    stamp = 1_767_225_600
    clf = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(stamp))
    text = [access_line(i, stamp, clf).rstrip("\n") for i in range(lines)]
    assert all(parsers.apache2_groups(t) == baseline_groups(t) for t in text[:1000]), HOST
    new = cpu(lambda: [parsers.apache2_groups(t) for t in text], repeat)
    old = cpu(lambda: [baseline_groups(t) for t in text], repeat)
    return new / lines * 1e6, old / lines * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args(argv)

    new, old = usual(options.lines, options.repeat)
    ratio = new / old
    print(f"\nusual lines ({options.lines}, best of {options.repeat}, process CPU)")
    print(f"{'parser':<12} {'us/line':>8} {'lines/s':>10}")
    print(f"{'shipyard':<12} {new:>8.2f} {1e6 / new:>10,.0f}")
    print(f"{'baseline':<12} {old:>8.2f} {1e6 / old:>10,.0f}")
    usual_met = ratio <= GOAL_USUAL_RATIO
    verdict = "met" if usual_met else "NOT met"
    print(f"ratio {ratio:.2f} (goal <= {GOAL_USUAL_RATIO:.2f}): {verdict}")

    print("\npathological lines, about 10,000 backslashes (shipyard); baseline at 15 and 24")
    print(f"{'line':<50} {'shipyard ms':>11} {'base@15 ms':>11} {'base@24 ms':>11}")
    worst = 0.0
    for kind, line in pathological(10_000).items():
        seconds = cpu(lambda line=line: parsers.parse_apache2(line), options.repeat)
        worst = max(worst, seconds)
        small = [
            cpu(lambda n=n, kind=kind: baseline_groups(pathological(n)[kind]), 1) for n in (15, 24)
        ]
        print(f"{kind:<50} {seconds * 1e3:>11.2f} {small[0] * 1e3:>11.1f} {small[1] * 1e3:>11.1f}")
    patho_met = worst <= GOAL_SECONDS
    print(
        f"slowest {worst * 1e3:.2f} ms (goal <= {GOAL_SECONDS * 1e3:.0f} ms): "
        f"{'met' if patho_met else 'NOT met'}"
    )
    return 0 if usual_met and patho_met else 1


if __name__ == "__main__":
    sys.exit(main())
