"""The helpers every command shares: times as backends give them, and how they read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stepflow.cli.common import elapsed, format_seconds

START = datetime(2026, 11, 25, 1, 2, 3, 456000, tzinfo=UTC)


def test_elapsed_reads_datetimes_and_rfc3339_strings_alike():
    end = START + timedelta(seconds=90.5)
    assert elapsed(START, end) == 90.5
    assert elapsed("2026-11-25T01:02:03.456Z", "2026-11-25T01:03:33.956Z") == 90.5
    assert elapsed(START, "2026-11-25T01:03:33.956+00:00") == 90.5


def test_elapsed_of_a_running_step_counts_to_now_and_of_a_pending_one_is_none():
    running = elapsed(datetime.now(UTC) - timedelta(seconds=5), None)
    assert running is not None and 5 <= running < 60
    assert elapsed(None, None) is None
    assert elapsed("not a time", None) is None


def test_format_seconds():
    assert [format_seconds(s) for s in (None, 4.25, 75, 3725)] == ["-", "4.2s", "1m15s", "1h02m05s"]
