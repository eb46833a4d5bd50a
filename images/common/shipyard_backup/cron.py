"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

The subset every crontab user knows: `*`, numbers, `a-b` ranges, `*/n` and
`a-b/n` steps and comma lists; day-of-week 0-7 with 0 and 7 both Sunday. As in
cron, when both day fields are restricted a day matching either one runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
# A schedule that matches nothing (31 February) must not loop forever.
SEARCH_LIMIT = timedelta(days=366 * 5)


class CronError(ValueError):
    pass


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: bad step in {part!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        else:
            first_text, dash, last_text = base.partition("-")
            if not first_text.isdigit() or (dash and not last_text.isdigit()):
                raise CronError(f"{name}: expected numbers, '*', ranges or steps, got {part!r}")
            first = int(first_text)
            last = int(last_text) if dash else (high if step_text else first)
        if not low <= first <= last <= high:
            raise CronError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        parts = text.split()
        if len(parts) != len(FIELDS):
            raise CronError(f"expected 5 fields (minute hour day month weekday), got {text!r}")
        sets = [_field(p, *spec) for p, spec in zip(parts, FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(
            text, sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*"
        )

    def _day_matches(self, moment: datetime) -> bool:
        day = moment.day in self.days
        weekday = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return weekday
        if self.any_weekday:
            return day
        return day or weekday

    def matches(self, moment: datetime) -> bool:
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment)
        )

    def next_after(self, moment: datetime) -> datetime | None:
        """The first matching minute strictly after moment."""
        current = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = current + SEARCH_LIMIT
        while current < limit:
            if current.month not in self.months or not self._day_matches(current):
                current = (current + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if current.hour not in self.hours:
                current = (current + timedelta(hours=1)).replace(minute=0)
                continue
            if current.minute in self.minutes:
                return current
            current += timedelta(minutes=1)
        return None

    def last_before(self, moment: datetime, horizon: timedelta) -> datetime | None:
        """The last matching minute at or before moment, looking back at most horizon."""
        current = moment.astimezone(UTC).replace(second=0, microsecond=0)
        limit = current - horizon
        while current >= limit:
            if self.matches(current):
                return current
            current -= timedelta(minutes=1)
        return None
