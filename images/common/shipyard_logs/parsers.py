"""Line parsers with fluentd's names and results: apache2, apache_error, json, none.

Each parser returns (event time, record), or None when the line does not match;
the agent then ships the line under `<tag>.unparsed` instead of dropping it.
"""

from __future__ import annotations

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
APACHE2 = re.compile(
    r"^(?P<host>[^ ]*) [^ ]* (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "
    r'"(?P<method>\S+)(?: +(?P<path>(?:[^"]|\\.)*?)(?: +\S*)?)?" '
    r"(?P<code>[^ ]*) (?P<size>[^ ]*)"
    r'(?: "(?P<referer>(?:[^"]|\\.)*)" "(?P<agent>(?:[^"]|\\.)*)")?$'
)
# The same expression with `[^"]*` for `(?:[^"]|\\.)*`. Without a backslash in
# the line the `\\.` branch can never match, so both give the same groups; the
# plain class is about four times faster, and most lines have no backslash.
# The lazy path `[^"]*?` is also taken a word at a time: the rest of the
# expression starts with " " or '"', so the path can only end before one of
# them, and ending inside a run of spaces gives what ending at its start gives
# (` +` takes the whole run either way). Trying only the ends of words, in the
# same order, finds the same path without a retry per character: the match
# takes half the time.
APACHE2_NO_ESCAPES = re.compile(
    r"^(?P<host>[^ ]*) [^ ]* (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "
    r'"(?P<method>\S+)(?: +(?P<path>[^" ]*+(?> +[^" ]+)*?)(?: +\S*)?)?" '
    r"(?P<code>[^ ]*) (?P<size>[^ ]*)"
    r'(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")?$'
)
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
    match = (APACHE2 if "\\" in line else APACHE2_NO_ESCAPES).match(line)
    if not match:
        return None
    # Every group of both expressions, in order; one call instead of nine lookups.
    host, user, time_text, method, path, code, size, referer, agent = match.groups()
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
