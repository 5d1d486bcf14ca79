"""Webhook bodies, pure: an :class:`~gateway.alerts.model.AlertEvent` as ``json``, ``slack`` or
``alertmanager``, and the HMAC signature of a body.

* ``json``: one object with the event's fields (camelCase), see :func:`json_body`;
* ``slack``: ``{"text": ..., "blocks": [...]}`` for an incoming webhook;
* ``alertmanager``: a list of one alert for Alertmanager's ``POST /api/v2/alerts``: ``labels``
  (``alertname``, ``account``, ``quota``, ``rule``, ``threshold``, ``severity``, ``provider``:
  the same for an alert's firing and resolution), ``annotations``, ``startsAt`` and ``endsAt``.
  A firing alert ends at its window's end (the reset resolves it) or, without one,
  :data:`OPEN_END` later, so Alertmanager does not resolve it on its own after its
  ``resolve_timeout``; a resolution ends when it resolved.

Bodies are compact UTF-8 JSON; counts stay exact integers at any size.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from gateway.alerts.messages import amount, share, vendor_name, when
from gateway.alerts.model import AlertEvent, EventKind, Rule

SIGNATURE_HEADER = "X-Usage-Gateway-Signature"
EVENT_HEADER = "X-Usage-Gateway-Event"
OPEN_END = timedelta(days=30)
ALERT_NAMES = {
    Rule.THRESHOLD: "UsageGatewayQuotaThreshold",
    Rule.PREDICTIVE: "UsageGatewayQuotaRunsOut",
    Rule.UNREADABLE: "UsageGatewayAccountUnreadable",
}


def utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with ``Z``, as the graph writes moments."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def dashboard_link(dashboard_url: str | None, account_id: str) -> str | None:
    """The account's card on the dashboard at ``dashboard_url`` (its ``#account-<id>``)."""
    if dashboard_url is None:
        return None
    return f"{dashboard_url.rstrip('/')}/#account-{quote(account_id, safe='')}"


def json_body(event: AlertEvent, dashboard_url: str | None = None) -> dict[str, Any]:
    """The ``json`` format's object."""
    facts = event.facts
    return {
        "id": event.id,
        "event": event.event.value,
        "rule": event.rule.value,
        "threshold": event.threshold,
        "accountId": facts.account_id,
        "provider": str(facts.provider),
        "quotaId": facts.quota_id,
        "quotaName": facts.quota_name,
        "window": facts.window.name if facts.window else None,
        "unit": facts.unit.name if facts.unit else None,
        "used": facts.used,
        "limit": facts.limit,
        "utilization": facts.utilization,
        "resetsAt": utc(facts.resets_at),
        "windowStart": utc(event.window_start),
        "runsOutEarliest": utc(facts.runs_out_earliest),
        "runsOutLatest": utc(facts.runs_out_latest),
        "lastReadAt": utc(facts.last_read_at),
        "reason": event.reason.value if event.reason else None,
        "at": utc(event.at),
        "firedAt": utc(event.fired_at),
        "message": event.message,
        "dashboardUrl": dashboard_link(dashboard_url, facts.account_id),
    }


def _slack_escape(text: str) -> str:
    """Slack's three control characters in text (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(event: AlertEvent, dashboard_url: str | None = None) -> dict[str, Any]:
    """The ``slack`` format: a ``text`` fallback and Block Kit ``blocks``."""
    facts = event.facts
    state = "FIRING" if event.event is EventKind.FIRING else "RESOLVED"
    rule = event.rule.value + (f" {share(event.threshold)}" if event.threshold else "")
    text = f"[{state}] {event.message}"
    details = [f"account `{_slack_escape(facts.account_id)}` ({vendor_name(facts)})"]
    if facts.quota_id is not None:
        details.append(
            f"used {amount(facts.used, facts.unit)} of {amount(facts.limit, facts.unit)}"
        )
    if facts.resets_at is not None:
        details.append(f"resets {when(facts.resets_at)}")
    if facts.runs_out_earliest is not None:
        latest = f" to {when(facts.runs_out_latest)}" if facts.runs_out_latest else ""
        details.append(f"runs out {when(facts.runs_out_earliest)}{latest}")
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*{state}* · {rule}\n{_slack_escape(event.message)}",
            },
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(details)}]},
    ]
    link = dashboard_link(dashboard_url, facts.account_id)
    if link is not None:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"<{link}|Open the dashboard>"}}
        )
    return {"text": _slack_escape(text), "blocks": blocks}


def severity(event: AlertEvent) -> str:
    """``critical`` for a threshold at or past the whole limit, ``warning`` otherwise."""
    if event.rule is Rule.THRESHOLD and (event.threshold or 0) >= 1.0:
        return "critical"
    return "warning"


def alertmanager_body(event: AlertEvent, dashboard_url: str | None = None) -> list[Any]:
    """The ``alertmanager`` format: a list of one alert for ``POST /api/v2/alerts``."""
    facts = event.facts
    labels = {
        "alertname": ALERT_NAMES[event.rule],
        "account": facts.account_id,
        "provider": str(facts.provider),
        "rule": event.rule.value,
        "severity": severity(event),
    }
    if facts.quota_id is not None:
        labels["quota"] = facts.quota_id
    if event.threshold is not None:
        labels["threshold"] = repr(float(event.threshold))
    annotations = {"summary": event.message, "event_id": event.id}
    for key, value in (
        ("quota_name", facts.quota_name),
        ("used", None if facts.used is None else str(facts.used)),
        ("limit", None if facts.limit is None else str(facts.limit)),
        ("utilization", None if facts.utilization is None else repr(facts.utilization)),
        ("resets_at", utc(facts.resets_at)),
        ("runs_out_earliest", utc(facts.runs_out_earliest)),
        ("runs_out_latest", utc(facts.runs_out_latest)),
        ("last_read_at", utc(facts.last_read_at)),
        ("reason", event.reason.value if event.reason else None),
    ):
        if value is not None:
            annotations[key] = value
    if event.event is EventKind.RESOLVED:
        starts, ends = event.fired_at or event.at, event.at
    else:
        starts = event.at
        reset = facts.resets_at
        ends = reset if reset is not None and reset > event.at else event.at + OPEN_END
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": utc(starts),
        "endsAt": utc(ends),
    }
    link = dashboard_link(dashboard_url, facts.account_id)
    if link is not None:
        alert["generatorURL"] = link
    return [alert]


RENDERERS = {"json": json_body, "slack": slack_body, "alertmanager": alertmanager_body}


def render(event: AlertEvent, form: str, dashboard_url: str | None = None) -> bytes:
    """The body of ``event`` in ``form`` (``json``, ``slack`` or ``alertmanager``)."""
    body = RENDERERS[form](event, dashboard_url)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def signature(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``body`` keyed by ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
