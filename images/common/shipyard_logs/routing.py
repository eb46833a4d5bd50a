"""fluentd-style tag routing for the collector: `[[match]]` tables, first match wins.

Each match owns a store directory `ROOT/<path>/` with its own slices
(`logs/<time_slice_format>.log`), its own exactly-once journal
(`.collector/journal`) and, for `type = "s3"`, its own uploader. A Forward
frame carries one tag and a chunk id belongs to one frame, so a frame is routed
whole: a replayed chunk reaches the same store again and is dropped there.
Tags that no pattern matches go to the file-only store `ROOT/unmatched/`.

Patterns follow fluentd's `<match>`: `*` is one tag part, `**` zero or more
parts (`a.**` matches `a`), `{x,y}` alternatives, `\\` escapes, and several
patterns separated by whitespace match when any of them does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Between, ConfigError, Matches, OneOf, Setting, merge
from .forward import Frame
from .slices import LayoutError, SliceLayout, SliceStore, StoreError, StoreResult
from .uploader import RULE_ID, S3_DEFAULTS, S3Settings

log = logging.getLogger("shipyard_logs.routing")

TYPES = ("file", "s3")
UNMATCHED = "unmatched"
# `logs` is where a store at ROOT itself keeps its slices, `unmatched` the
# fallback store: a match directory with either name would share their files.
RESERVED_PATHS = frozenset({"logs", UNMATCHED})
_SAFE_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
MATCH_ENV = re.compile(r"SHIPYARD_COLLECTOR_MATCH_(\d+)_S3_([A-Z0-9_]+)")
SECRET_KEYS = ("access_key_id", "secret_access_key")
# Seconds after a slice ends before it is shipped: late records after that
# become a further part, so a long wait only delays, and a negative one is a typo.
TIME_SLICE_WAIT = Between(0, 30 * 86400)
PATTERN = Matches(r"[^\0]*", "fluentd tag patterns", 1024)
MAX_CACHED_TAGS = 4096
MAX_WARNED_TAGS = 1024


class PatternError(ValueError):
    """A match pattern that fluentd would not read the same way."""


# ---------------------------------------------------------------- patterns


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """One fluentd glob pattern as a regex for fullmatch (fluentd's GlobMatchPattern)."""
    if pattern.startswith("/"):
        raise PatternError(f"{pattern!r}: /regex/ patterns are not supported")
    alternatives = [""]  # regex text of each open {...} level, innermost last
    groups: list[list[str]] = []  # finished alternatives of each open {...}
    dot = False  # a '.' is held back: before '**' it must also match "no part"
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            if dot:
                alternatives[-1] += r"(?![^.])"
                dot = False
            if pattern.startswith(".", i + 2):
                alternatives[-1] += r"(?:.*\.|\A)"
                i += 3
            else:
                alternatives[-1] += ".*"
                i += 2
            continue
        if dot:
            alternatives[-1] += r"\."
            dot = False
        char = pattern[i]
        if char == "\\":
            i += 1
            if i == len(pattern):
                raise PatternError(f"{pattern!r} ends in a lone backslash")
            alternatives[-1] += re.escape(pattern[i])
        elif char == ".":
            dot = True
        elif char == "*":
            alternatives[-1] += r"[^.]*"
        elif char == "{":
            groups.append([])
            alternatives.append("")
        elif char in ",}" and groups:
            groups[-1].append(alternatives.pop())
            if char == ",":
                alternatives.append("")
            else:
                alternatives[-1] += "(?:" + "|".join(groups.pop()) + ")"
        elif char == "}":
            raise PatternError(f"{pattern!r} has a '}}' without '{{'")
        else:
            alternatives[-1] += re.escape(char)
        i += 1
    # fluentd silently drops a trailing '.' and closes open braces; both are
    # almost surely typos, so they are refused instead of guessed.
    if dot:
        raise PatternError(f"{pattern!r} ends in '.'")
    if groups:
        raise PatternError(f"{pattern!r} has a '{{' without '}}'")
    return re.compile(alternatives[0])


class TagMatcher:
    """Whitespace-separated fluentd patterns; a tag matches when any of them does."""

    def __init__(self, text: str) -> None:
        patterns = text.split()
        if not patterns:
            raise PatternError("is empty")
        self.text = text
        self._regexes = [compile_pattern(p) for p in patterns]

    def __call__(self, tag: str) -> bool:
        return any(regex.fullmatch(tag) for regex in self._regexes)

    def __repr__(self) -> str:
        return f"TagMatcher({self.text!r})"


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class MatchConfig:
    name: str  # "match[0]"; "default" for the implicit catch-all
    matcher: TagMatcher
    type: str
    path: str
    layout: SliceLayout
    time_slice_wait: float
    s3: S3Settings | None


def rule_id_for(prefix: str) -> str:
    """A lifecycle rule id per prefix, so matches sharing a bucket keep their own rules."""
    if not prefix:
        return RULE_ID
    rule_id = f"{RULE_ID}:{prefix}"
    if len(rule_id) > 255:  # S3's limit on rule ids
        rule_id = f"{RULE_ID}:{hashlib.sha256(prefix.encode()).hexdigest()}"
    return rule_id


def s3_settings(
    given: object, where: str, env_prefix: str, env: Mapping[str, str], rule_id: str | None
) -> S3Settings | None:
    """An [s3] table merged with its environment; None when it names no bucket.

    rule_id None derives the lifecycle rule id from the prefix.
    """
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a table")
    s3 = merge(S3_DEFAULTS, given, env_prefix, where, env)
    for key in SECRET_KEYS:
        s3[key] = _secret(s3, key, where)
    if bool(s3["access_key_id"]) != bool(s3["secret_access_key"]):
        raise ConfigError(f"{where}: access_key_id and secret_access_key go together")
    if s3["retry_max_interval"] < s3["upload_interval"]:
        raise ConfigError(f"{where}.retry_max_interval must not be below upload_interval")
    if s3["prefix"] and not s3["prefix"].endswith("/"):
        s3["prefix"] += "/"
    if not s3["bucket"]:
        return None
    return S3Settings(**s3, rule_id=rule_id or rule_id_for(s3["prefix"]))


def _secret(s3: dict[str, Any], key: str, where: str) -> str:
    """The value of `key`, or the contents of the file `<key>_file` names (read once, now)."""
    file_key = f"{key}_file"
    name = s3.pop(file_key)
    if not name:
        return str(s3[key])
    if s3[key]:
        raise ConfigError(f"{where}: give {key} or {file_key}, not both")
    try:
        value = Path(name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}.{file_key}: cannot read {name}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}.{file_key}: {name} is not UTF-8 text") from exc
    if not value:
        raise ConfigError(f"{where}.{file_key}: {name} is empty")
    broken = S3_DEFAULTS[key].rule(value)
    if broken is not None:
        raise ConfigError(f"{where}.{file_key}: what {name} holds {broken}")
    return value


def parse_matches(
    raw: object, top: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[MatchConfig, ...]:
    """The [[match]] tables in order (None: no tables); top-level slice settings are defaults."""
    if raw is None:
        _check_match_env([], env)
        return ()
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise ConfigError("collector.match must be an array of tables ([[match]])")
    if not raw:
        raise ConfigError("collector.match is empty: leave it out to store every tag under root")
    matches: list[MatchConfig] = []
    for index, table in enumerate(raw):
        match = _parse_match(index, dict(table), top, env)
        _check_unique(match, matches)
        matches.append(match)
    _check_match_env(matches, env)
    return tuple(matches)


def _parse_match(
    index: int, table: dict[str, Any], top: Mapping[str, Any], env: Mapping[str, str]
) -> MatchConfig:
    where = f"collector.match[{index}]"
    s3_given = table.pop("s3", None)
    defaults = {
        "pattern": Setting("", PATTERN),
        "type": Setting("", OneOf(TYPES)),
        "path": "",
        "time_slice_format": top["time_slice_format"],
        "time_slice_wait": Setting(float(top["time_slice_wait"]), TIME_SLICE_WAIT),
    }
    # No environment here: only [match.s3] keys take environment overrides.
    values = merge(defaults, table, "", where, {})
    try:
        matcher = TagMatcher(values["pattern"])
    except PatternError as exc:
        raise ConfigError(f"{where}.pattern: {exc}") from exc
    path = values["path"]
    if path and (not _SAFE_PATH.fullmatch(path) or path in RESERVED_PATHS):
        raise ConfigError(
            f"{where}.path {json.dumps(path)} must be one directory name of A-Za-z0-9._- "
            f"(not starting with '.', not {' or '.join(sorted(RESERVED_PATHS))}), or \"\""
        )
    try:
        layout = SliceLayout(values["time_slice_format"])
    except LayoutError as exc:
        raise ConfigError(f"{where}.time_slice_format: {exc}") from exc
    s3 = None
    if values["type"] == "s3":
        s3 = s3_settings(
            {} if s3_given is None else s3_given,
            f"{where}.s3",
            f"SHIPYARD_COLLECTOR_MATCH_{index}_S3_",
            env,
            rule_id=None,
        )
        if s3 is None:
            raise ConfigError(f"{where}.s3.bucket is required for type s3")
    elif s3_given is not None:
        raise ConfigError(f"{where}.s3 is only used with type s3")
    return MatchConfig(
        name=f"match[{index}]",
        matcher=matcher,
        type=values["type"],
        path=path,
        layout=layout,
        time_slice_wait=float(values["time_slice_wait"]),
        s3=s3,
    )


def _check_unique(match: MatchConfig, earlier: list[MatchConfig]) -> None:
    where = f"collector.{match.name}"
    for other in earlier:
        if other.path == match.path:
            raise ConfigError(f"{where}.path {json.dumps(match.path)} is used by {other.name}")
        # Same keys in the same place: slices of both would overwrite each
        # other's objects and fight over one lifecycle rule.
        if match.s3 and other.s3 and _s3_place(match.s3) == _s3_place(other.s3):
            raise ConfigError(
                f"{where}.s3.prefix {json.dumps(match.s3.prefix)} "
                f"in bucket {json.dumps(match.s3.bucket)} "
                f"is used by {other.name}"
            )


def _s3_place(s3: S3Settings) -> tuple[str, str, str]:
    return (s3.endpoint_url, s3.bucket, s3.prefix)


def _check_match_env(matches: list[MatchConfig], env: Mapping[str, str]) -> None:
    """Refuse SHIPYARD_COLLECTOR_MATCH_* variables that would be silently ignored."""
    for name in sorted(env):
        if not name.startswith("SHIPYARD_COLLECTOR_MATCH_"):
            continue
        found = MATCH_ENV.fullmatch(name)
        if found is None or found[2].lower() not in S3_DEFAULTS:
            raise ConfigError(f"{name}: expected SHIPYARD_COLLECTOR_MATCH_<N>_S3_<KEY>")
        index = int(found[1])
        if index >= len(matches):
            raise ConfigError(f"{name}: there is no collector.match[{index}]")
        if matches[index].type != "s3":
            raise ConfigError(f"{name}: collector.match[{index}] is not of type s3")


# ---------------------------------------------------------------- runtime


@dataclass(eq=False)
class Route:
    name: str
    store: SliceStore
    time_slice_wait: float
    s3: S3Settings | None
    matcher: TagMatcher | None  # None: the unmatched store, taken when nothing else is


class Router:
    """Sends each frame to the store of the first match for its tag.

    Every method runs on the collector's single writer thread, like the stores.
    """

    def __init__(
        self,
        root: Path,
        matches: Iterable[MatchConfig],
        chunk_retention: float,
        max_chunk_ids: int,
        unmatched_layout: SliceLayout | None,
        record_id_key: str = "",
    ) -> None:
        def store(path: str, layout: SliceLayout) -> SliceStore:
            return SliceStore(root / path, layout, chunk_retention, max_chunk_ids, record_id_key)

        self.routes = [
            Route(m.name, store(m.path, m.layout), m.time_slice_wait, m.s3, m.matcher)
            for m in matches
        ]
        self.unmatched: Route | None = None
        if unmatched_layout is not None:
            self.unmatched = Route(UNMATCHED, store(UNMATCHED, unmatched_layout), 0.0, None, None)
        self._cache: dict[str, Route] = {}
        self._warned: set[str] = set()

    @property
    def all_routes(self) -> list[Route]:
        return self.routes + ([self.unmatched] if self.unmatched else [])

    def open(self) -> None:
        for route in self.all_routes:
            route.store.open()

    def close(self) -> None:
        for route in self.all_routes:
            route.store.close()

    def route(self, tag: str) -> Route:
        found = self._cache.get(tag)
        if found is None:
            found = next((r for r in self.routes if r.matcher and r.matcher(tag)), None)
            if found is None:
                found = self._fallback(tag)
            if len(self._cache) >= MAX_CACHED_TAGS:
                self._cache.clear()  # tags are client-chosen: keep memory bounded
            self._cache[tag] = found
        return found

    def _fallback(self, tag: str) -> Route:
        if self.unmatched is None:
            raise RuntimeError(f"no route for tag {tag!r} and no unmatched store")
        if tag not in self._warned and len(self._warned) < MAX_WARNED_TAGS:
            self._warned.add(tag)
            log.warning("tag %r matches no [[match]] pattern; storing it under %s/", tag, UNMATCHED)
        return self.unmatched

    def store(self, frames: Iterable[Frame], peer: str) -> StoreResult:
        """Commit each frame in its route's store; returns only when all are durable.

        When a store cannot commit, StoreError carries what was stored before
        (`stored`) and the frames still to store (`remaining`, that store's and
        the later ones'), so a retry neither loses nor repeats a frame.
        """
        groups: dict[Route, list[Frame]] = {}
        for frame in frames:
            groups.setdefault(self.route(frame.tag), []).append(frame)
        total = StoreResult()
        routed = list(groups.values())
        for index, (route, group) in enumerate(groups.items()):
            try:
                total.add(route.store.store(group, peer))
            except StoreError as exc:
                exc.stored = total
                exc.remaining = [frame for later in routed[index:] for frame in later]
                raise
        return total
