"""Line parsers with fluentd's names and results: apache2, apache_error, json, none.

Each parser returns (event time, record), or None when the line does not match;
the agent then ships the line under `<tag>.unparsed` instead of dropping it.
"""

from __future__ import annotations

import bisect
import calendar
import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .forward import EventTime

Parsed = tuple[EventTime, dict[str, Any]] | None
Parser = Callable[[str], Parsed]

# fluentd's lib/fluent/plugin/parser_apache2.rb REGEXP, in Python's group syntax.
# It is the reference for what an access line means, but a backtracking engine
# needs exponential time on it: `(?:[^"]|\\.)` reads `\"` two ways, so every
# backslash before a quote doubles the ways to split a field that does not end
# where it must (14 of them and a field too many took 3.7 s). parse_apache2
# gives exactly its results in time linear in the line (see _Scan).
APACHE2 = re.compile(
    r"^(?P<host>[^ ]*) [^ ]* (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "
    r'"(?P<method>\S+)(?: +(?P<path>(?:[^"]|\\.)*?)(?: +\S*)?)?" '
    r"(?P<code>[^ ]*) (?P<size>[^ ]*)"
    r'(?: "(?P<referer>(?:[^"]|\\.)*)" "(?P<agent>(?:[^"]|\\.)*)")?$'
)
# The usual line, `"METHOD /path HTTP/x.y" code size` and optionally a quoted
# referer and agent without quotes or backslashes inside: every field ends at
# a character it cannot hold, so this expression never backtracks, and when
# it matches, its groups are APACHE2's (the path is the first end of the lazy
# field that lets the rest match, which here is the space before HTTP/).
APACHE2_COMMON = re.compile(
    r"([^ ]*) [^ ]* ([^ ]*) \[([^\]]*)\] "
    r'"(\S+) ([^" ]+) HTTP/[0-9.]+" ([^ ]*) ([^ ]*)'
    r'(?: "([^"\\]*)" "([^"\\]*)")?\Z'
)
_HEAD = re.compile(r'([^ ]*) [^ ]* ([^ ]*) \[([^\]]*)\] "')
_WORD = re.compile(r"\S+")
_WORD_OR_NONE = re.compile(r"\S*")
_SPACES = re.compile(r" +")
_SPACES_OR_QUOTE = re.compile(r' +|"')
_QUOTE = re.compile(r'"')
Groups = tuple[str | None, ...]


class _Scan:
    r"""APACHE2.match(line).groups(), found with a bounded number of steps per character.

    How the backtracking engine decides, and how this reads the same:

    * host, user, time: each field ends at the first character it cannot
      hold, so there is one way to read them.
    * method `\S+` is tried longest first. Only two ends can lead anywhere:
      the end of the run, followed by the optional request part; or, failing
      that, one character short when the run ends in a quote (no path).
    * The request part ` +P(?: +\S*)?"`: P is lazy, so its ends are tried
      from the left, and a `(?:[^"]|\\.)*` field can pass a quote only where a
      backslash precedes it. An end can work only before a space (then
      ` +\S*"` must end in a quote right before the space that starts the
      code) or at a quote (which closes the request). Ends inside one run of
      spaces behave alike, so each run is tried once. If P starts at the first
      non-space, one more reading exists: P empty at the last of several spaces.
    * The tail ` code size(?: "R" "A")?$`: code and size end at spaces; R is
      greedy but, like P, stops at its first quote and goes past it only
      through `\"`, so its ends are tried from the left too, up to the first
      quote no backslash precedes. A must end at the quote before the end.
    """

    def __init__(self, line: str) -> None:
        self.line = line
        self.n = len(line)
        self._tails: dict[int, Groups | None] = {}
        self._goods: list[int] | None = None
        self._unescaped: list[int] = []
        self._final = -1

    def groups(self) -> Groups | None:
        line = self.line
        head = _HEAD.match(line)
        if head is None:
            return None
        start = head.end()
        method = _WORD.match(line, start)
        if method is None:
            return None
        end = method.end()
        if end < self.n and line[end] == " ":
            first = _SPACES.match(line, end).end()  # type: ignore[union-attr]
            found = self._request(first)
            if found is None and first - end >= 2:
                tail = self._trailer(first)
                found = None if tail is None else ("", tail)
            if found is not None:
                return (*head.groups(), line[start:end], found[0], *found[1])
        if end - 1 > start and line[end - 1] == '"':
            tail = self._tail(end)
            if tail is not None:
                return (*head.groups(), line[start : end - 1], None, *tail)
        return None

    def _request(self, first: int) -> tuple[str, Groups] | None:
        """The path from `first` and the tail after the request's closing quote."""
        line = self.line
        for found in _SPACES_OR_QUOTE.finditer(line, first):
            end = found.start()
            if line[end] == " ":
                tail = self._trailer(found.end())
            else:
                tail = self._tail(end + 1)
                if tail is None and (end == first or line[end - 1] != "\\"):
                    return None  # a quote the path cannot pass
            if tail is not None:
                return line[first:end], tail
        return None

    def _trailer(self, word: int) -> Groups | None:
        r"""` +\S*"` from a space run ending at `word`: a word that ends in the closing quote."""
        line = self.line
        after = _WORD_OR_NONE.match(line, word).end()  # type: ignore[union-attr]
        if after > word and line[after - 1] == '"':
            return self._tail(after)
        return None

    def _tail(self, at: int) -> Groups | None:
        """code, size, referer, agent from ` code size...` at `at`, or None."""
        if at in self._tails:
            return self._tails[at]
        line, n = self.line, self.n
        found: Groups | None = None
        if at < n and line[at] == " ":
            code_end = line.find(" ", at + 1)
            if code_end >= 0:
                size_end = line.find(" ", code_end + 1)
                size_end = n if size_end < 0 else size_end
                code, size = line[at + 1 : code_end], line[code_end + 1 : size_end]
                if size_end == n:
                    found = (code, size, None, None)
                elif line.startswith('"', size_end + 1):
                    quoted = self._quoted(size_end + 2)
                    found = None if quoted is None else (code, size, *quoted)
        self._tails[at] = found
        return found

    def _quoted(self, start: int) -> tuple[str, str] | None:
        """referer and agent from `R" "A"$` with R starting at `start`."""
        if self._goods is None:
            self._index()
        assert self._goods is not None
        good = bisect.bisect_left(self._goods, start)
        stop = bisect.bisect_left(self._unescaped, start)
        if good == len(self._goods):
            return None
        end = self._goods[good]
        if stop < len(self._unescaped) and self._unescaped[stop] < end:
            return None  # R cannot pass that quote
        return self.line[start:end], self.line[end + 3 : self._final]

    def _index(self) -> None:
        """Every quote that can end R: followed by ` "` and an agent field reaching the end."""
        line, n = self.line, self.n
        if line.endswith('"'):
            self._final = n - 1
        elif line.endswith('"\n'):
            self._final = n - 2  # `$` also matches before a final newline
        quotes = [m.start() for m in _QUOTE.finditer(line)]
        self._unescaped = [q for q in quotes if q == 0 or line[q - 1] != "\\"]
        # The agent field from a to the final quote passes no unescaped quote.
        last = bisect.bisect_left(self._unescaped, self._final) - 1
        blocker = self._unescaped[last] if last >= 0 else -1
        self._goods = [
            q for q in quotes if self._final >= q + 3 > blocker and line.startswith(' "', q + 1)
        ]


def apache2_groups(line: str) -> Groups | None:
    """host, user, time, method, path, code, size, referer, agent as APACHE2 reads them."""
    common = APACHE2_COMMON.match(line)
    if common is not None:
        return common.groups()
    return _Scan(line).groups()


# fluentd's parser_apache_error.rb expression.
APACHE_ERROR = re.compile(
    r"^\[[^ ]* (?P<time>[^\]]*)\] \[(?P<level>[^\]]*)\](?: \[pid (?P<pid>[^\]]*)\])?"
    r"( \[client (?P<client>[^\]]*)\])? (?P<message>.*)$"
)
# %d/%b/%Y:%H:%M:%S %z, parsed by hand: strptime is slow and follows the locale.
_CLF_TIME = re.compile(
    r"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2}):?(\d{2})"
)
_ERROR_TIME = re.compile(
    r"([A-Za-z]{3}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))? (\d{4})"
)
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_LEADING_INT = re.compile(r"\s*[+-]?\d+")
_clf_cache: dict[str, EventTime] = {}


def ruby_to_i(text: str) -> int:
    """Ruby's String#to_i: the leading integer, 0 when there is none."""
    if text.isdigit() and text.isascii():
        return int(text)  # the usual case, without a regex
    match = _LEADING_INT.match(text)
    return int(match.group()) if match else 0


def clf_time(text: str) -> EventTime | None:
    """Parse `10/Oct/2000:13:55:36 -0700`; None when it is not that format."""
    cached = _clf_cache.get(text)
    if cached is not None:
        return cached
    match = _CLF_TIME.fullmatch(text)
    if not match:
        return None
    day, mon, year, hh, mm, ss, sign, oh, om = match.groups()
    month = _MONTHS.get(mon.capitalize())
    if month is None:
        return None
    try:
        local = calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss)))
        datetime(int(year), month, int(day))  # rejects 31/Feb, which timegm would roll over
    except ValueError:
        return None
    offset = (int(oh) * 3600 + int(om) * 60) * (1 if sign == "+" else -1)
    result = EventTime(local - offset, 0)
    if len(_clf_cache) > 4096:
        _clf_cache.clear()
    _clf_cache[text] = result
    return result


def parse_apache2(line: str) -> Parsed:
    groups = apache2_groups(line)
    if groups is None:
        return None
    host, user, time_text, method, path, code, size, referer, agent = groups
    stamp = clf_time(time_text)
    if stamp is None:
        return None
    return stamp, {
        "host": None if host == "-" else host,
        "user": None if user == "-" else user,
        "method": method,
        "path": path,
        "code": ruby_to_i(code) or None,
        "size": None if size == "-" else ruby_to_i(size),
        "referer": None if referer == "-" else referer,
        "agent": None if agent == "-" else agent,
    }


def error_time(text: str) -> EventTime | None:
    """Apache's error log time (`Oct 11 14:32:52.123456 2000`), in the agent's local zone."""
    match = _ERROR_TIME.fullmatch(text)
    if not match:
        return None
    mon, day, hh, mm, ss, frac, year = match.groups()
    month = _MONTHS.get(mon.capitalize())
    if month is None:
        return None
    try:
        moment = datetime(int(year), month, int(day), int(hh), int(mm), int(ss))
    except ValueError:
        return None
    nanos = int((frac or "0").ljust(9, "0"))
    return EventTime(int(time.mktime(moment.timetuple())), nanos)


def parse_apache_error(line: str) -> Parsed:
    match = APACHE_ERROR.match(line)
    if not match:
        return None
    stamp = error_time(match["time"])
    if stamp is None:
        return None
    # Like fluentd's regexp parser, groups that did not take part are left out.
    fields = ("level", "pid", "client", "message")
    return stamp, {k: match[k] for k in fields if match[k] is not None}


def _json_time(value: object) -> EventTime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and 0 <= value < 2**32:
        return EventTime.from_float(float(value))
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is not None:
            return EventTime.from_float(moment.timestamp())
    return None


def parse_json(line: str) -> Parsed:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    stamp = _json_time(record.get("time"))
    if stamp is None:
        return now(), record
    del record["time"]  # fluentd moves time_key into the event time
    return stamp, record


def parse_none(line: str) -> Parsed:
    return now(), {"message": line}


def now() -> EventTime:
    return EventTime.from_float(time.time())


PARSERS: dict[str, Parser] = {
    "apache2": parse_apache2,
    "apache_error": parse_apache_error,
    "json": parse_json,
    "none": parse_none,
}
