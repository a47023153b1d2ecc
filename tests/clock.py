"""`--clock`: run the suite as if the machine's clock read another moment.

Tests must never depend on the day they run. The README's test command proves that for the date-sensitive tests
(marker `clock`: calendar, scheduling, plans, monitoring windows, token and link expiry) by running them again at
awkward moments: the end of a month and of a year at 23:59 UTC, and a daylight-saving change in the studio's zone.

`--clock 2027-01-31T23:59:30Z` moves the whole test process there before any test module is imported (so module
level constants such as "two days from now" see it too); the clock then ticks on from there. `--clock-zone
Europe/Paris` makes that the studio's time zone (STUDIO_TIMEZONE) in every test that does not set its own.

Only this process travels: worker subprocesses and the database and Redis servers keep the real time. A studio
shares one clock across its processes, so at a moved clock the tests that start worker processes (the `workers`
fixture) are deselected, not skipped: they ran at the real time in the main run.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

CLOCK_ZONE = "STUDIO_TEST_CLOCK_ZONE"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("clock")
    group.addoption("--clock", metavar="ISO_MOMENT", default=None,
                    help="run as if now were this moment (ISO 8601 with an offset, e.g. 2027-01-31T23:59:30Z)")
    group.addoption("--clock-zone", metavar="IANA_ZONE", default=None,
                    help="the studio's time zone (STUDIO_TIMEZONE) for tests that do not set their own")


def parse_moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise pytest.UsageError(f"--clock {text!r}: give an offset (Z or +hh:mm), so the moment is unambiguous")
    return moment.astimezone(UTC)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clock: depends on the current date or time; the README's test command "
                                       "also runs it at awkward moments (--clock)")
    moment = config.getoption("clock")
    if moment is None:
        return
    import time_machine

    traveller = time_machine.travel(parse_moment(moment), tick=True)
    traveller.start()
    config.add_cleanup(traveller.stop)


SUBPROCESS_FIXTURES = frozenset({"workers"})  # fixtures whose processes keep the real clock


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("clock") is None:
        return
    other_clock = [item for item in items if SUBPROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if other_clock:
        config.hook.pytest_deselected(items=other_clock)
        items[:] = [item for item in items if item not in other_clock]


def pytest_report_header(config: pytest.Config) -> str | None:
    moment, zone = config.getoption("clock"), config.getoption("clock_zone")
    if moment is None and zone is None:
        return None
    return f"clock: now = {datetime.now(UTC).isoformat(timespec='seconds')}, studio zone = {zone or 'UTC'}"
