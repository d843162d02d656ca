"""``harbourwatch debrief ALERTS.jsonl``: how fast the watch answered a drill's alerts.

A drill's ``--alerts-out`` file has the rules' transitions (``transition``) and the
trainees' acts (``act``, see ``harbourwatch.alerts_file``). Each ack or resolve line carries
the message time the rules raised its alert (``raised_at``) and the message time it was
taken (``message_time``): their difference is the time to acknowledge (or resolve), on the
drill's own clock, so the same file always gives the same debrief whatever the replay's
speed, and a recorded log's year does not stand between the two.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harbourwatch.response_times import response_times
from harbourwatch.timeutil import parse_iso

#: The acts an alert can be answered by, in the order a debrief shows them.
ANSWERS = ("ack", "resolve")


class DebriefInputError(Exception):
    """The file cannot be read as an alerts file: ``errors`` name ``FILE:LINE: reason``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(slots=True)
class AlertAnswer:
    """One alert of the drill and the first ack and resolve made on it."""

    alert_id: str
    rule: str
    severity: str | None
    mmsi: int | None
    started_at: str | None
    acts: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def delay(self, action: str) -> float | None:
        """Seconds of message time from the alert's raising to ``action`` (None: not made,
        or made but not timed, see ``untimed``)."""
        act = self.acts.get(action)
        if act is None or self.untimed(action) is not None:
            return None
        return parse_iso(act["message_time"]) - parse_iso(act["raised_at"])

    def untimed(self, action: str) -> str | None:
        """Why ``action``, made, has no time to it, or None (also when not made)."""
        act = self.acts.get(action)
        if act is None:
            return None
        if act.get("raised_at") is None:  # as in a drill resumed with ``--start``
            return "raised before this file"
        if act.get("message_time") is None:
            return "no message time"
        # Not on the clock the alert was raised on (a file edited or joined from two
        # runs): a negative time would pull the median down.
        if parse_iso(act["message_time"]) < parse_iso(act["raised_at"]):
            return f"dated before it was raised at {act['raised_at']}: not timed"
        return None


@dataclass(slots=True)
class AlertsFile:
    transitions: list[dict[str, Any]]
    acts: list[dict[str, Any]]


def _fault(line: Mapping[str, Any]) -> str | None:
    """Why a line is neither a transition nor an act this debrief can read."""
    if "act" in line:
        if line["act"] in ANSWERS:
            if not isinstance(line.get("alert_id"), str):
                return "alert_id: missing or not text"
            for key in ("raised_at", "message_time"):
                value = line.get(key)
                if value is not None and (not isinstance(value, str) or _bad_time(value)):
                    return f"{key}: not an ISO 8601 time"
        return None
    if not isinstance(line.get("id"), str) or not isinstance(line.get("rule"), str):
        return "neither an alert transition (id, rule) nor an operator act (act)"
    return None


def _bad_time(value: str) -> bool:
    try:
        parse_iso(value)
    except ValueError:
        return True
    return False


def load(path: Path) -> AlertsFile:
    """The transitions and acts of an ``--alerts-out`` file; blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DebriefInputError([f"{path}: cannot read: {exc}"]) from exc
    out = AlertsFile([], [])
    errors: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{n}: not JSON ({exc.msg})")
            continue
        fault = "not a JSON object" if not isinstance(line, dict) else _fault(line)
        if fault is not None:
            errors.append(f"{path}:{n}: {fault}")
        elif "act" in line:
            out.acts.append(line)
        else:
            out.transitions.append(line)
    if errors:
        raise DebriefInputError(errors[:20] + ([f"… and {len(errors) - 20} more"]
                                               if len(errors) > 20 else []))
    return out


def answers(transitions: Iterable[Mapping[str, Any]],
            acts: Iterable[Mapping[str, Any]]) -> list[AlertAnswer]:
    """Every alert the file raises (in the order raised), then any acted on that it does
    not raise (raised before it began), each with its first ack and first resolve."""
    found: dict[str, AlertAnswer] = {}
    for line in transitions:
        if line.get("transition") == "new" and line["id"] not in found:
            found[line["id"]] = AlertAnswer(line["id"], line["rule"], line.get("severity"),
                                            line.get("mmsi"), line.get("started_at"))
    for act in acts:
        if act["act"] not in ANSWERS:
            continue
        alert = found.get(act["alert_id"])
        if alert is None:
            alert = found[act["alert_id"]] = AlertAnswer(
                act["alert_id"], str(act.get("rule")), act.get("severity"), act.get("mmsi"),
                act.get("started_at"))
        alert.acts.setdefault(act["act"], act)
    return list(found.values())


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 120 else f"{value:.0f} s ({value / 60:.1f} min)"


def _answer(alert: AlertAnswer, action: str) -> str:
    act = alert.acts.get(action)
    done = "acknowledged" if action == "ack" else "resolved"
    if act is None:
        return f"not {done}"
    delay = alert.delay(action)
    after = f"({alert.untimed(action)})" if delay is None else f"after {_seconds(delay)}"
    return f"{done} by {act.get('actor')} at {act.get('message_time')} {after}"


def report(alerts: list[AlertAnswer]) -> list[str]:
    """The debrief's lines: one per alert, then the totals."""
    lines = [f"{a.started_at} {a.rule} {a.mmsi} {a.severity} {a.alert_id}: "
             f"{_answer(a, 'ack')}; {_answer(a, 'resolve')}" for a in alerts]
    acked = response_times(d for a in alerts if (d := a.delay("ack")) is not None)
    n_acked = sum(1 for a in alerts if "ack" in a.acts)
    n_resolved = sum(1 for a in alerts if "resolve" in a.acts)
    neither = sum(1 for a in alerts if not a.acts)
    summary = f"{len(alerts)} alert{'' if len(alerts) == 1 else 's'}; {n_acked} acknowledged"
    if acked is not None:
        summary += (f" (time to acknowledge: median {_seconds(acked.median)}, "
                    f"longest {_seconds(acked.longest)})")
    lines.append(f"{summary}; {n_resolved} resolved; {neither} neither acknowledged "
                 "nor resolved")
    return lines
