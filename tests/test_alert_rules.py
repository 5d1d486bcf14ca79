"""Alert rules and the state machine as pure functions, and the ``[alerts]`` config."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.alerts.config import DEFAULT_THRESHOLDS, RuleSet, parse_duration
from gateway.alerts.machine import StateRow, step
from gateway.alerts.model import EventKind, Reason, Rule, StateName
from gateway.alerts.rules import Track, Verdict, Window, quota_verdicts, unreadable_verdict
from gateway.domain import ProviderId, Quota, QuotaUnit, QuotaWindow
from gateway.errors import ConfigError
from gateway.forecast import Forecast
from gateway.settings import parse_settings

NOW = datetime(2026, 3, 18, 14, 25, tzinfo=UTC)
MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
VT = ProviderId("virustotal")


def quota(used: int | None, limit: int | None = 1000, **extra) -> Quota:
    values = {
        "id": "vt:monthly",
        "account_id": "vt",
        "name": "monthly",
        "window": QuotaWindow.MONTH,
        "unit": QuotaUnit.REQUESTS,
        "limit": limit,
        "used": used,
        "resets_at": APRIL,
    }
    return Quota(**{**values, **extra})


def projection(earliest: datetime | None, latest: datetime | None = None) -> Forecast:
    return Forecast(MARCH, APRIL, 900, 1200, earliest, latest, 5)


# -- rules -------------------------------------------------------------------------------------


def test_every_threshold_is_judged_by_utilization_in_the_quota_window() -> None:
    verdicts = quota_verdicts(RuleSet(), quota(900), VT, None, NOW)
    assert [(v.track.rule, v.track.threshold, v.holds) for v in verdicts] == [
        (Rule.THRESHOLD, 0.8, True),
        (Rule.THRESHOLD, 0.9, True),
        (Rule.THRESHOLD, 1.0, False),
        (Rule.PREDICTIVE, None, None),  # no forecast: nothing to judge by
    ]
    assert {v.window for v in verdicts} == {Window(MARCH, APRIL)}
    facts = verdicts[0].facts
    assert (facts.used, facts.limit, facts.utilization, facts.resets_at) == (900, 1000, 0.9, APRIL)
    assert (facts.quota_id, facts.quota_name, facts.provider) == ("vt:monthly", "monthly", VT)


def test_a_quota_without_numbers_is_not_judged() -> None:
    verdicts = quota_verdicts(RuleSet(thresholds=(0.5,)), quota(None), VT, None, NOW)
    assert [v.holds for v in verdicts] == [None, None]
    verdicts = quota_verdicts(RuleSet(thresholds=(0.5,)), quota(5, limit=None), VT, None, NOW)
    assert verdicts[0].holds is None


def test_the_predictive_rule_fires_when_the_forecast_runs_out_before_the_reset() -> None:
    early, late = NOW + timedelta(days=3), NOW + timedelta(days=8)
    rules = RuleSet(thresholds=())
    (verdict,) = quota_verdicts(rules, quota(600), VT, projection(early, late), NOW)
    assert (verdict.track.rule, verdict.holds) == (Rule.PREDICTIVE, True)
    assert (verdict.facts.runs_out_earliest, verdict.facts.runs_out_latest) == (early, late)
    (verdict,) = quota_verdicts(rules, quota(600), VT, projection(None), NOW)
    assert verdict.holds is False
    assert quota_verdicts(RuleSet(thresholds=(), predictive=False), quota(600), VT, None, NOW) == []


def test_windows_come_from_the_quota() -> None:
    hourly = quota(10, window=QuotaWindow.HOUR, resets_at=datetime(2026, 3, 18, 15, tzinfo=UTC))
    (verdict,) = quota_verdicts(RuleSet(thresholds=(0.5,), predictive=False), hourly, VT, None, NOW)
    assert verdict.window == Window(datetime(2026, 3, 18, 14, tzinfo=UTC), hourly.resets_at)
    term = quota(
        10,
        window=QuotaWindow.FIXED_TERM,
        resets_at=None,
        starts_on=date(2026, 1, 1),
        ends_on=date(2026, 12, 31),
    )
    (verdict,) = quota_verdicts(RuleSet(thresholds=(0.5,), predictive=False), term, VT, None, NOW)
    assert verdict.window == Window(
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    )
    open_ended = quota(10, window=QuotaWindow.FIXED_TERM, resets_at=None)
    (verdict,) = quota_verdicts(
        RuleSet(thresholds=(0.5,), predictive=False), open_ended, VT, None, NOW
    )
    assert verdict.window is None


def test_unreadable_counts_from_the_last_good_read_or_the_first_try() -> None:
    rules = RuleSet(unreadable_after=7200)
    read = NOW - timedelta(hours=2, seconds=1)
    verdict = unreadable_verdict(rules, "vt", VT, read, None, NOW)
    assert verdict is not None
    assert (verdict.holds, verdict.window, verdict.facts.last_read_at) == (True, Window(read), read)
    just = unreadable_verdict(rules, "vt", VT, NOW - timedelta(hours=2), None, NOW)
    assert just is not None and just.holds is False  # "longer than", not "as long as"
    never = unreadable_verdict(rules, "vt", VT, None, NOW - timedelta(hours=3), NOW)
    assert never is not None and never.holds is True
    assert never.window == Window(NOW - timedelta(hours=3)) and never.facts.last_read_at is None
    unknown = unreadable_verdict(rules, "vt", VT, None, None, NOW)
    assert unknown is not None and unknown.holds is None
    assert unreadable_verdict(RuleSet(unreadable_after=None), "vt", VT, read, None, NOW) is None


# -- the state machine -------------------------------------------------------------------------

TRACK = Track("vt:monthly", Rule.THRESHOLD, 0.8)


MARCH_WINDOW = Window(MARCH, APRIL)
FACTS = quota_verdicts(RuleSet(), quota(850), VT, None, NOW)[0].facts


def verdict(holds: bool | None, window: Window | None = MARCH_WINDOW) -> Verdict:
    return Verdict(TRACK, holds, window, FACTS)


def apply(rows: list[StateRow], *verdicts: Verdict, now: datetime = NOW, cooldown: float = 3600):
    """The changes, and the rows as the store would keep them afterwards."""
    changes = step(
        rows, verdicts, now=now, cooldown=cooldown, quotas_read=True, quota_ids={"vt:monthly"}
    )
    kept = {id(r): r for r in rows}
    for change in changes:
        old = next((r for r in rows if r.id is not None and r.id == change.row.id), None)
        if old is not None:
            kept.pop(id(old))
        if not change.drop:
            kept[id(change.row)] = change.row
    fresh = []
    for index, row in enumerate(kept.values()):
        fresh.append(row if row.id is not None else StateRow(**{**row.__dict__, "id": 100 + index}))
    return changes, fresh


def events(changes) -> list[tuple[EventKind, Reason | None]]:
    return [(c.event, c.reason) for c in changes if c.event is not None]


def test_fires_once_per_window_and_resolves_when_it_clears() -> None:
    changes, rows = apply([], verdict(True))
    assert events(changes) == [(EventKind.FIRING, None)]
    assert [(r.state, r.window_key, r.fired_at) for r in rows] == [
        (StateName.FIRING, MARCH.isoformat(), NOW)
    ]
    changes, rows = apply(rows, verdict(True), now=NOW + timedelta(hours=1))
    assert events(changes) == []  # still firing: nothing new to say
    later = NOW + timedelta(hours=2)
    changes, rows = apply(rows, verdict(False), now=later)
    assert events(changes) == [(EventKind.RESOLVED, Reason.CLEARED)]
    assert [(r.state, r.resolved_at) for r in rows] == [(StateName.RESOLVED, later)]
    for hours in (3, 30, 300):  # holds again, cooldown long over: still the same window
        changes, rows = apply(rows, verdict(True), now=NOW + timedelta(hours=hours))
        assert events(changes) == []
    assert [r.state for r in rows] == [StateName.RESOLVED]


def test_a_window_reset_resolves_and_the_new_window_may_fire_again() -> None:
    _, rows = apply([], verdict(True))
    april = Window(APRIL, datetime(2026, 5, 1, tzinfo=UTC))
    reset = APRIL + timedelta(hours=6)
    changes, rows = apply(rows, verdict(None, april), now=reset)  # no verdict yet: still resets
    assert events(changes) == [(EventKind.RESOLVED, Reason.WINDOW_RESET)]
    changes, rows = apply(rows, verdict(True, april), now=reset + timedelta(days=20))
    assert events(changes) == [(EventKind.FIRING, None)]
    assert sorted((r.window_key, r.state.value) for r in rows) == [
        (MARCH.isoformat(), "resolved"),
        (APRIL.isoformat(), "firing"),
    ]


def test_the_cooldown_holds_a_rule_pending_then_lets_it_fire() -> None:
    hour = Window(datetime(2026, 3, 18, 14, tzinfo=UTC), datetime(2026, 3, 18, 15, tzinfo=UTC))
    next_hour = Window(hour.end, hour.end + timedelta(hours=1))  # type: ignore[operator]
    _, rows = apply([], verdict(True, hour))
    at_reset = datetime(2026, 3, 18, 15, 5, tzinfo=UTC)
    changes, rows = apply(rows, verdict(True, next_hour), now=at_reset, cooldown=1800)
    # the old window resolved now, so the new one waits out the cooldown
    assert events(changes) == [(EventKind.RESOLVED, Reason.WINDOW_RESET)]
    assert [r.state for r in rows if r.window_key == next_hour.key] == [StateName.PENDING]
    changes, rows = apply(
        rows, verdict(True, next_hour), now=at_reset + timedelta(minutes=29), cooldown=1800
    )
    assert events(changes) == []
    fire = at_reset + timedelta(minutes=30)
    changes, rows = apply(rows, verdict(True, next_hour), now=fire, cooldown=1800)
    assert events(changes) == [(EventKind.FIRING, None)]
    assert [(r.state, r.fired_at) for r in rows if r.window_key == next_hour.key] == [
        (StateName.FIRING, fire)
    ]


def test_a_pending_rule_that_clears_is_dropped_without_a_word() -> None:
    _, rows = apply([], verdict(True, None))
    _, rows = apply(rows, verdict(False, None), now=NOW + timedelta(minutes=1))
    changes, rows = apply(rows, verdict(True, None), now=NOW + timedelta(minutes=2))
    assert events(changes) == [] and [r.state for r in rows if r.open] == [StateName.PENDING]
    changes, rows = apply(rows, verdict(False, None), now=NOW + timedelta(minutes=3))
    assert [c.drop for c in changes] == [True] and events(changes) == []
    assert [r.state for r in rows] == [StateName.RESOLVED]


def test_without_a_window_it_fires_again_after_the_cooldown() -> None:
    _, rows = apply([], verdict(True, None))
    _, rows = apply(rows, verdict(False, None), now=NOW + timedelta(minutes=10))
    changes, rows = apply(rows, verdict(True, None), now=NOW + timedelta(minutes=71))
    assert events(changes) == [(EventKind.FIRING, None)]
    assert sorted(r.state.value for r in rows) == ["firing", "resolved"]
    assert len({r.window_key for r in rows}) == 2  # two episodes, each its own row


def test_rules_and_quotas_that_went_away_resolve_unless_the_account_was_not_read() -> None:
    _, rows = apply([], verdict(True))
    later = NOW + timedelta(hours=1)
    kept = step(rows, [], now=later, cooldown=0, quotas_read=False)
    assert kept == []  # the read failed: nothing is known, nothing changes
    removed = step(rows, [], now=later, cooldown=0, quotas_read=True, quota_ids={"vt:monthly"})
    assert events(removed) == [(EventKind.RESOLVED, Reason.RULE_REMOVED)]
    gone = step(rows, [], now=later, cooldown=0, quotas_read=True, quota_ids=set())
    assert events(gone) == [(EventKind.RESOLVED, Reason.QUOTA_GONE)]


def test_an_unknown_verdict_changes_nothing_in_its_window() -> None:
    _, rows = apply([], verdict(True))
    changes, after = apply(rows, verdict(None), now=NOW + timedelta(hours=1))
    assert changes == [] and after == rows


# -- the config --------------------------------------------------------------------------------

ACCOUNTS = [
    {"id": "vt-soc", "provider": "virustotal", "api_key": "k", "group": "g"},
    {"id": "repute", "provider": "reputeapi", "api_key": "k"},
]


def settings(alerts: dict, env: dict | None = None):
    return parse_settings({"accounts": ACCOUNTS, "alerts": alerts}, source="g.toml", env=env or {})


def test_defaults_overrides_and_webhooks() -> None:
    loaded = settings(
        {
            "cooldown": "30m",
            "unreadable_after": "90m",
            "providers": {"reputeapi": {"thresholds": [0.95], "predictive": False}},
            "accounts": {"vt-soc": {"thresholds": [1.0, 0.5], "unreadable_after": "off"}},
            "dashboard_url": "https://usage.example.com/board/",
            "webhooks": [
                {"url": "${HOOK_URL}", "format": "slack", "secret": "${HOOK_SECRET}"},
                {"url": "http://127.0.0.1:9/x", "name": "am", "format": "alertmanager"},
            ],
        },
        env={"HOOK_URL": "https://hooks.example.com/T0/B0/tok3n", "HOOK_SECRET": "s3cret-value"},
    )
    alerts = loaded.alerts
    assert alerts is not None
    vt, repute = loaded.accounts
    assert alerts.rules_for(vt) == RuleSet((0.5, 1.0), True, None, 1800)
    assert alerts.rules_for(repute) == RuleSet((0.95,), False, 5400, 1800)
    assert alerts.rules == RuleSet(DEFAULT_THRESHOLDS, True, 5400, 1800)
    slack, manager = alerts.webhooks
    assert (slack.format, slack.url.reveal(), slack.host) == (
        "slack",
        "https://hooks.example.com/T0/B0/tok3n",
        "hooks.example.com",
    )
    assert slack.name.startswith("slack-") and manager.name == "am"
    # the secret, and a URL read from the environment, are secrets: logs redact them
    assert {"s3cret-value", "https://hooks.example.com/T0/B0/tok3n"} <= loaded.secret_values
    assert "http://127.0.0.1:9/x" not in loaded.secret_values
    assert "tok3n" not in repr(alerts) and "s3cret" not in repr(alerts)


def test_without_an_alerts_section_there_are_no_rules() -> None:
    assert parse_settings({"accounts": ACCOUNTS}, env={}).alerts is None
    empty = settings({}).alerts
    assert empty is not None and empty.rules == RuleSet() and empty.webhooks == ()


@pytest.mark.parametrize(
    ("alerts", "words"),
    [
        ({"thresholds": 0.8}, "[alerts] field 'thresholds' must be a list"),
        ({"thresholds": [0.8, 0.8]}, "[alerts] field 'thresholds' must be a list"),
        ({"thresholds": [0]}, "0 is not"),
        ({"thresholds": [True]}, "[alerts] field 'thresholds'"),
        ({"thresholds": [0.1] * 11}, "at most 10"),
        ({"predictive": "yes"}, "[alerts] field 'predictive' must be true or false"),
        ({"unreadable_after": "2 hours"}, "[alerts] field 'unreadable_after' must be a duration"),
        ({"unreadable_after": "10s"}, "from 60 s"),
        ({"cooldown": -1}, "[alerts] field 'cooldown' must be a duration"),
        ({"thresold": [0.8]}, "[alerts] has an unknown field 'thresold'"),
        ({"accounts": {"vt-sco": {}}}, "[alerts.accounts.vt-sco]: no account has this id"),
        ({"accounts": {"vt-soc": {"webhooks": []}}}, "[alerts.accounts.vt-soc] has an unknown"),
        ({"accounts": {"vt-soc": {"thresholds": [2, "x"]}}}, "[alerts.accounts.vt-soc] field"),
        ({"providers": {"acme": {}}}, "[alerts.providers.acme]: no such provider"),
        ({"providers": {"virustotal": 1}}, "[alerts.providers.virustotal] must be a table"),
        ({"dashboard_url": "ftp://x"}, "[alerts] field 'dashboard_url' must be an http"),
        ({"webhooks": {"url": "http://x"}}, "alerts.webhooks must be an array"),
        ({"webhooks": [{}]}, "[[alerts.webhooks]] #1 field 'url' is missing"),
        ({"webhooks": [{"url": "x"}]}, "[[alerts.webhooks]] #1 field 'url' must be an http"),
        ({"webhooks": [{"url": "http://u:p@h/"}]}, "must not hold credentials"),
        ({"webhooks": [{"url": "${NOPE}"}]}, "environment variable NOPE is not set"),
        ({"webhooks": [{"url": "http://h/", "format": "xml"}]}, "'format' must be one of"),
        ({"webhooks": [{"url": "http://h/", "secret": "short"}]}, "at least 8 characters"),
        ({"webhooks": [{"url": "http://h/", "timeout": "5m"}]}, "'timeout' must be a duration"),
        ({"webhooks": [{"url": "http://h/", "colour": 1}]}, "#1 has an unknown field 'colour'"),
        ({"webhooks": [{"url": "http://h/", "name": "a b"}]}, "#1 field 'name' must be"),
        (
            {"webhooks": [{"url": "http://h/", "name": "a"}, {"url": "http://i/", "name": "a"}]},
            "#2 field 'name': 'a' is taken",
        ),
        ({"webhooks": [{"url": "http://h/"}] * 11}, "at most 10 tables"),
    ],
)
def test_bad_alerts_name_the_file_the_table_and_the_field(alerts: dict, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(alerts)
    text = str(caught.value)
    assert text.startswith("g.toml: ") and words in text, text
    assert "\n" not in text


def test_durations() -> None:
    assert [parse_duration(v) for v in ("90s", "15m", "2h", "1d", 30, "1.5h")] == [
        90,
        900,
        7200,
        86400,
        30,
        5400,
    ]
    assert [parse_duration(v) for v in ("2 h", "h", -1, True, None, "1w")] == [None] * 6
