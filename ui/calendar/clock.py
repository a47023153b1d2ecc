"""Times on the calendar: the studio's zone, and the wall-clock times the component sends and takes.

The component bundles no time-zone plugin, so with a named ``timeZone`` FullCalendar works in "UTC
coercion": the times we send and the times it sends back are wall-clock times of the studio's zone,
naive or with a "Z" that means nothing. :func:`parse_calendar_time` reads them that way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.config import get_settings
from core.jobs.lifecycle import aware


def studio_zone() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def local(moment: datetime, tz: ZoneInfo) -> datetime:
    return (aware(moment) or moment).astimezone(tz)


def wall_clock(moment: datetime, tz: ZoneInfo) -> str:
    """A stored time as the calendar gets it: the studio zone's wall clock, without an offset."""
    return local(moment, tz).replace(tzinfo=None).isoformat(timespec="minutes")


def parse_calendar_time(text: str, tz: ZoneInfo) -> datetime:
    """A time the component sent: naive or "Z" is the studio zone's wall clock; another offset is honoured."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None or moment.utcoffset() == timedelta(0):
        return moment.replace(tzinfo=tz)
    return moment


def when_text(moment: datetime, tz: ZoneInfo) -> str:
    return f"{local(moment, tz):%a %d %b %Y, %H:%M}"
