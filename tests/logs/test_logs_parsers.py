"""The apache2 parser's fast path gives exactly what fluentd's expression gives."""

import itertools
import random

import pytest
from logs_harness import apache_line
from shipyard_logs import parsers
from shipyard_logs.parsers import APACHE2, APACHE2_NO_ESCAPES, parse_apache2

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


def test_the_corpus_covers_escapes_matches_and_misses():
    assert sum("\\" in line for line in CORPUS) > 100
    assert sum(APACHE2.match(line) is not None for line in CORPUS) > 100
    assert sum(APACHE2.match(line) is None for line in CORPUS) > 10


@pytest.mark.parametrize("line", [line for line in CORPUS if "\\" not in line])
def test_without_backslashes_both_expressions_give_the_same_groups(line):
    slow, fast = APACHE2.match(line), APACHE2_NO_ESCAPES.match(line)
    assert (slow and slow.groupdict()) == (fast and fast.groupdict())


# Pieces that move the request's and trailer's boundaries: runs of spaces, quotes
# inside and after words, tabs and other whitespace that \\S does not take.
PIECES = [
    " ",
    "  ",
    '"',
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
]


def random_lines(count: int) -> list[str]:
    rng = random.Random(20261125)  # noqa: S311 - a fixed seed: the same lines every run
    lines = []
    for _ in range(count):
        request = "".join(rng.choices(PIECES, k=rng.randint(0, 8)))
        trailer = "".join(rng.choices(PIECES, k=rng.randint(0, 8)))
        middle = f'" 200 1{trailer}' if rng.random() < 0.7 else trailer
        lines.append(f'1.2.3.4 - - {TIME} "{request}{middle}')
    return lines


def test_without_backslashes_both_expressions_agree_on_random_lines():
    lines = random_lines(20_000)
    assert sum(APACHE2.match(line) is not None for line in lines) > 2000
    for line in lines:
        slow, fast = APACHE2.match(line), APACHE2_NO_ESCAPES.match(line)
        assert (slow and slow.groupdict()) == (fast and fast.groupdict()), line


def test_parse_apache2_equals_fluentds_expression_on_every_line(monkeypatch):
    fast = [parse_apache2(line) for line in CORPUS]
    # The reference: the parser with only fluentd's expression.
    monkeypatch.setattr(parsers, "APACHE2_NO_ESCAPES", APACHE2)
    assert fast == [parse_apache2(line) for line in CORPUS]


def test_escaped_quotes_take_fluentds_path():
    line = f'1.2.3.4 - - {TIME} "GET /a\\"b HTTP/1.1" 200 5 "-" "say \\"hi\\""'
    assert APACHE2_NO_ESCAPES.match(line) is None  # the fast expression alone would miss it
    _, record = parse_apache2(line)
    assert (record["path"], record["agent"]) == ('/a\\"b', 'say \\"hi\\"')
