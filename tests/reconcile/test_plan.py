"""Pure reconciliation arithmetic: windows, CQL, version gaps, trash differences."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.reconcile_plan import (
    MINUTE_MS,
    build_cql,
    content_kind,
    event_type,
    left_trash_type,
    minutes_back,
    missing_versions,
    parse_time_ms,
    probe_versions,
    reach_ms,
    split_member,
    split_members,
    trash_member,
    trash_rank,
    window_start,
)

NOW = int(datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp() * 1000)


def test_window_starts_at_the_watermark_minus_the_overlap() -> None:
    assert window_start(NOW - 600_000, NOW - 86_400_000, 120) == NOW - 720_000
    # before any sweep, the first window starts at the given first moment
    assert window_start(None, NOW - 3_600_000, 120) == NOW - 3_600_000  # not before install
    # a second sweep soon after the install: its overlap stops at the install too
    assert window_start(NOW - 60_000, NOW - 90_000, 300, NOW - 90_000) == NOW - 90_000
    # long installed: the overlap reaches back as usual, however old the watermark
    assert window_start(NOW - 86_400_000 * 3, NOW - 86_400_000, 300, 0) == NOW - 259_500_000


def test_minutes_back_rounds_up_and_is_at_least_one() -> None:
    assert minutes_back(NOW, NOW) == 1
    assert minutes_back(NOW, NOW - 1) == 1
    assert minutes_back(NOW, NOW - MINUTE_MS) == 1
    assert minutes_back(NOW, NOW - MINUTE_MS - 1) == 2
    assert minutes_back(NOW, NOW - 90 * MINUTE_MS) == 90


def test_cql_is_relative_to_the_server_clock_and_newest_first() -> None:
    cql = build_cql(NOW, NOW - 17 * MINUTE_MS - 5)
    # 17 min 5 ms back, rounded up to 18, and a minute more of slack: the bound creeps with
    # the server's clock while the cursor's pages are read
    assert cql == (
        'type in (page,blogpost) and lastmodified >= now("-19m") order by lastmodified desc'
    )
    exact = build_cql(NOW, NOW - 60 * MINUTE_MS)  # on a whole minute: still a minute of slack
    assert 'lastmodified >= now("-61m")' in exact


def test_cql_upper_bound_is_padded_by_a_minute() -> None:
    cql = build_cql(NOW, NOW - 60 * MINUTE_MS, NOW - 10 * MINUTE_MS - 30_000)
    assert 'lastmodified >= now("-61m")' in cql
    assert 'lastmodified <= now("-9m")' in cql
    # an upper bound within two minutes of now adds no clause (it would exclude nothing)
    assert "<=" not in build_cql(NOW, NOW - 60 * MINUTE_MS, NOW - 90_000)


def test_cql_bounds_are_padded_for_clock_skew() -> None:
    """The pad (the overlap) widens both bounds: skew between the worker's clock and
    Confluence's, up to the pad, moves neither inside the window."""
    pad = 5 * MINUTE_MS
    cql = build_cql(NOW, NOW - 60 * MINUTE_MS, NOW - 10 * MINUTE_MS - 30_000, pad_ms=pad)
    assert 'lastmodified >= now("-66m")' in cql
    assert 'lastmodified <= now("-4m")' in cql
    assert "<=" not in build_cql(NOW, NOW - 60 * MINUTE_MS, NOW - 6 * MINUTE_MS, pad_ms=pad)


@given(
    since=st.integers(min_value=1, max_value=10_000 * MINUTE_MS),
    upper=st.integers(min_value=0, max_value=10_000 * MINUTE_MS),
)
def test_cql_window_always_covers_since_and_upper(since: int, upper: int) -> None:
    """The query never narrows the window: its bounds are at or beyond since and upper."""
    cql = build_cql(NOW, NOW - since, NOW - upper)
    lower = int(cql.split('>= now("-')[1].split("m")[0])
    assert NOW - lower * MINUTE_MS <= NOW - since
    if "<=" in cql:
        top = int(cql.split('<= now("-')[1].split("m")[0])
        assert NOW - top * MINUTE_MS >= NOW - upper + MINUTE_MS


@given(
    back=st.integers(min_value=0, max_value=10_000 * MINUTE_MS),
    lead=st.integers(min_value=0, max_value=60 * MINUTE_MS),
)
def test_a_query_reaches_its_window_start_until_its_reach(back: int, lead: int) -> None:
    """Confluence evaluates ``now("-Nm")`` when a request arrives: up to the query's reach the
    lower bound is still at or before ``since``, and the reach covers the lead plus a minute."""
    since = NOW - back
    cql = build_cql(NOW, since, lead_ms=lead)
    lower = int(cql.split('>= now("-')[1].split("m")[0])
    reach = reach_ms(NOW, since, lead)
    assert reach - lower * MINUTE_MS <= since
    assert reach >= NOW + lead + MINUTE_MS


def test_parse_time_ms() -> None:
    assert parse_time_ms("2026-11-27T12:00:00.000Z") == NOW
    assert parse_time_ms("2026-11-27T13:00:00+01:00") == NOW
    assert parse_time_ms("2026-11-27T12:00:00") is None  # no zone: unknown instant
    assert parse_time_ms("yesterday") is None
    assert parse_time_ms(None) is None


def test_probe_covers_the_newest_versions() -> None:
    assert list(probe_versions(3, 25)) == [1, 2, 3]
    assert list(probe_versions(30, 5)) == [26, 27, 28, 29, 30]


@pytest.mark.parametrize(
    ("current", "seen", "created_in_window", "expected"),
    [
        (1, set(), True, [1]),  # a new page whose page_created was dropped
        (3, {1, 2, 3}, True, []),  # everything delivered
        (3, {1, 3}, True, [2]),  # one dropped update between two delivered
        (4, {1}, True, [2, 3, 4]),
        (3, {3}, True, [1, 2]),  # created in the window: its early versions too
        (3, {3}, False, []),  # older page: versions below the lowest seen may predate us
        (7, {5}, False, [6, 7]),  # gaps above the last delivered version
        (7, {4, 6}, False, [5, 7]),
        (9, set(), False, [9]),  # nothing known: only the current version is surely new
    ],
)
def test_missing_versions(
    current: int, seen: set[int], created_in_window: bool, expected: list[int]
) -> None:
    assert missing_versions(current, seen, created_in_window, 25) == expected


@given(
    current=st.integers(min_value=1, max_value=200),
    seen=st.sets(st.integers(min_value=1, max_value=200)),
    created=st.booleans(),
    cap=st.integers(min_value=1, max_value=50),
)
def test_missing_versions_are_unseen_probed_and_include_the_current(
    current: int, seen: set[int], created: bool, cap: int
) -> None:
    seen = {v for v in seen if v <= current}
    missing = missing_versions(current, seen, created, cap)
    assert missing == sorted(missing)
    assert not set(missing) & seen
    assert all(v in probe_versions(current, cap) for v in missing)
    if current not in seen:
        assert missing[-1] == current


def test_event_types_and_kinds() -> None:
    assert event_type("page", 1) == "page.created"
    assert event_type("page", 2) == "page.updated"
    assert event_type("blogpost", 1) == "blogpost.created"
    assert event_type("blogpost", 5) == "blogpost.updated"
    assert content_kind("page") == "page"
    assert content_kind("blogpost") == "blogpost"
    assert content_kind("comment") is None
    assert content_kind(None) is None


def test_trash_differences() -> None:
    assert split_members({trash_member("3", 7), trash_member("10", 1)}) == [("10", 1), ("3", 7)]
    assert split_member("a:b:12") == ("a:b", 12)
    assert left_trash_type("current") == "page.restored"
    assert left_trash_type("archived") == "page.restored"
    assert left_trash_type("deleted") == "page.deleted"
    assert left_trash_type(None) == "page.deleted"


def test_the_trash_is_listed_once_per_its_own_interval() -> None:
    hour = 3600
    assert trash_rank(hour, NOW, None, under_way=False) == 0  # never listed
    assert trash_rank(hour, NOW, NOW - 1000, under_way=True) == -1  # resumed first
    assert trash_rank(hour, NOW, NOW - 3_599_000, under_way=False) is None
    assert trash_rank(hour, NOW, NOW - 3_600_000, under_way=False) == NOW - 3_600_000
    assert trash_rank(0, NOW, None, under_way=True) is None  # off
