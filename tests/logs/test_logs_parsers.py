"""The apache2 parser's fast path gives exactly what fluentd's expression gives."""

import itertools
import os
import random
import subprocess

import pytest
from logs_harness import COMMON, PYTHON, apache_line
from shipyard_logs.parsers import APACHE2, APACHE2_COMMON, _Scan, apache2_groups, parse_apache2

TIME = "[20/Nov/2026:10:15:00 +0000]"
REQUESTS = [
    "GET / HTTP/1.1",
    "GET /a b c HTTP/1.0",
    "GET /only-a-path",
    "GET",
    "POST  /two-spaces  HTTP/1.1",
    'GET /a\\"b HTTP/1.1',  # an escaped quote inside the request
    "GET /ends-with-backslash\\\\ HTTP/1.1",
    "GET /tab\\there HTTP/1.1",
    "\\x16\\x03\\x01",  # TLS sent to a plain-HTTP port, as Apache logs it
    "-",
    "",
]
TRAILERS = [
    "",
    ' "-" "-"',
    ' "https://example.com/" "Mozilla/5.0 (X11)"',
    ' "-" "agent with \\"quotes\\" inside"',
    ' "ref\\\\" "agent\\\\"',
    ' "unterminated',
    ' "a" "b" trailing',
]
HOSTS = ["10.0.0.1 - -", "::1 - bob", "- - -", "host ident user"]


def corpus() -> list[str]:
    lines = [
        f'{host.split()[0]} {host.split()[1]} {host.split()[2]} {TIME} "{request}" {status}{trail}'
        for host, request, status, trail in itertools.product(
            HOSTS, REQUESTS, ["200 512", "304 -", "abc 12x"], TRAILERS
        )
    ]
    lines += [apache_line(i) for i in range(50)]
    lines += ['1.2.3.4 - - [bad time] "GET / HTTP/1.1" 200 1', "not a log line", ""]
    return lines


CORPUS = corpus()


def reference(line: str) -> tuple | None:
    """fluentd's expression run by a backtracking engine: what a line means."""
    match = APACHE2.match(line)
    return match and match.groups()


def test_the_corpus_covers_escapes_matches_and_misses():
    assert sum("\\" in line for line in CORPUS) > 100
    assert sum(APACHE2.match(line) is not None for line in CORPUS) > 100
    assert sum(APACHE2.match(line) is None for line in CORPUS) > 10
    assert sum(APACHE2_COMMON.match(line) is not None for line in CORPUS) > 50


@pytest.mark.parametrize("line", CORPUS)
def test_the_linear_reading_gives_fluentds_groups(line):
    assert apache2_groups(line) == reference(line)
    # The scanner alone too, also where the common-line expression answers.
    assert _Scan(line).groups() == reference(line)


# Pieces that move the fields' boundaries: runs of spaces, quotes inside and
# after words, backslashes before quotes and other characters, tabs and other
# whitespace that \S does not take, and a newline, which `$` may sit before.
PIECES = [
    " ",
    "  ",
    '"',
    "\\",
    '\\"',
    "\\\\",
    "\t",
    "\u00a0",
    "a",
    "GET",
    "/x",
    "HTTP/1.1",
    "-",
    "200",
    "12",
    '" "',
    '"-"',
    "]",
    "x y",
    '""',
    "\n",
]


def random_lines(count: int, pieces: list[str]) -> list[str]:
    rng = random.Random(20261125)  # noqa: S311 - a fixed seed: the same lines every run
    lines = []
    for _ in range(count):
        request = "".join(rng.choices(pieces, k=rng.randint(0, 7)))
        trailer = "".join(rng.choices(pieces, k=rng.randint(0, 7)))
        middle = f'" 200 1{trailer}' if rng.random() < 0.7 else trailer
        lines.append(f'1.2.3.4 - - {TIME} "{request}{middle}')
    return lines


def test_the_linear_reading_agrees_with_fluentds_on_random_lines():
    # At most 7 pieces a field keeps the backtracking reference quick.
    lines = random_lines(30_000, PIECES)
    assert sum(APACHE2.match(line) is not None for line in lines) > 3000
    assert sum("\\" in line and APACHE2.match(line) is not None for line in lines) > 1000
    for line in lines:
        assert apache2_groups(line) == reference(line), repr(line)


def test_parse_apache2_builds_fluentds_record():
    line = f'1.2.3.4 - bob {TIME} "GET /a\\"b HTTP/1.1" 304 - "-" "say \\"hi\\""'
    _, record = parse_apache2(line)
    assert record == {
        "host": "1.2.3.4",
        "user": "bob",
        "method": "GET",
        "path": '/a\\"b',
        "code": 304,
        "size": None,
        "referer": None,
        "agent": 'say \\"hi\\"',
    }


def pathological(backslashes: int) -> dict[str, str]:
    """Lines a backtracking engine needs exponential time for, whole and torn.

    Each holds about `backslashes` backslashes. With fluentd's expression and
    30 of them, "torn in the path" takes about a second and every 2 more
    double it; "runs between spaces" takes 0.75 s with 24.
    """
    run, third = "\\" * backslashes, "\\" * (backslashes // 3)
    pairs = '\\"' * (backslashes // 2)
    head = f'1.2.3.4 - - {TIME} "GET /'
    ok = ' HTTP/1.1" 200 5'
    return {
        "in path, referer and agent, an extra field": f'{head}{third}{ok} "{third}" "{third}" "x"',
        "runs between spaces in the path, an extra field": (
            f'{head}{third} {third} {third}{ok} "-" "a" x'
        ),
        "in the referer, an extra field": f'{head}{ok} "{run}" "a" "x"',
        "escaped quotes in the path, an extra field": f'{head}{pairs}{ok} "-" "a" x',
        "torn in the path": f"{head}{run}",
        "torn in the agent": f'{head}{ok} "{third}" "{third}',
        "torn in escaped quotes": f'{head}{ok} "-" "{pairs}',
        "many spaces": f'{head}{" " * backslashes}x" 200 5 "-" "a" x',
    }


@pytest.mark.parametrize("kind", list(pathological(3)))
def test_pathological_lines_parse_as_fluentd_reads_them(kind: str):
    for backslashes in range(0, 19, 3):  # few enough for the reference
        line = pathological(backslashes)[kind]
        assert apache2_groups(line) == reference(line), repr(line)


TIMED_PARSE = """
import sys, time
from shipyard_logs.parsers import parse_apache2
line = sys.stdin.read()
started = time.perf_counter()
parse_apache2(line)
print(time.perf_counter() - started)
"""


@pytest.mark.parametrize("kind", list(pathological(3)))
def test_a_line_of_10000_backslashes_parses_in_linear_time(kind: str):
    """bench/parsers.py measures this against the 50 ms goal; the bound here is generous.

    The parse runs in a child process, so a parser that backtracks fails the
    test at the timeout instead of holding the run for hours.
    """
    proc = subprocess.run(
        [PYTHON, "-c", TIMED_PARSE],
        input=pathological(10_000)[kind],
        env={**os.environ, "PYTHONPATH": str(COMMON)},
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert float(proc.stdout) < 0.5
