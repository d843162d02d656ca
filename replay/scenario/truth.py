"""Ground truth of a scenario: the anomalies injected (each with the window in which its alert
must start), the control cases that must not alert and the alerts an injection raises besides
its own (side effects), written as JSON; and how a drill's alerts compare with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harbourwatch.timeutil import parse_iso
from ingest.report import iso_time


@dataclass(slots=True)
class Expectation:
    """One anomaly (with ``window``) or one control (``window`` None).

    ``window`` holds message times (Unix seconds); an anomaly is detected when an alert of
    ``rule`` for ``mmsi`` (and ``other_mmsi`` either way round, when given) starts within it.
    Receiver-level rules name the ``receiver`` instead of a vessel. A ``side_effect`` (no
    window) is an alert an injection raises besides its own: neither wanted nor a fault.
    """

    rule: str
    mmsi: int | None
    note: str
    window: tuple[float, float] | None = None
    other_mmsi: int | None = None
    receiver: str | None = None
    side_effect: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "mmsi": self.mmsi,
                               "other_mmsi": self.other_mmsi}
        if self.receiver is not None:
            out["receiver"] = self.receiver
        if self.window is not None:
            out["window"] = [iso_time(self.window[0]), iso_time(self.window[1])]
        out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, side_effect: bool = False) -> Expectation:
        window = data.get("window")
        return cls(rule=data["rule"], mmsi=data.get("mmsi"), note=data.get("note", ""),
                   window=None if window is None else (parse_iso(window[0]),
                                                       parse_iso(window[1])),
                   other_mmsi=data.get("other_mmsi"), receiver=data.get("receiver"),
                   side_effect=side_effect)

    def matches(self, alert: dict[str, Any]) -> bool:
        """Whether an alert (``Alert.to_dict`` shape) is about this expectation's subject."""
        if alert["rule"] != self.rule:
            return False
        if self.receiver is not None:
            return bool(alert.get("details", {}).get("receiver") == self.receiver)
        pair = {alert.get("mmsi"), alert.get("other_mmsi")}
        if self.mmsi not in pair:
            return False
        return self.other_mmsi is None or self.other_mmsi in pair

    def detected_by(self, alert: dict[str, Any]) -> bool:
        """An anomaly is detected when a matching alert starts inside the window."""
        if self.window is None or not self.matches(alert):
            return False
        started = parse_iso(alert["started_at"])
        return self.window[0] <= started <= self.window[1]


@dataclass(slots=True)
class Truth:
    seed: int
    start: float
    end: float
    zones: str
    rules: list[str]
    receivers: list[str]
    anomalies: list[Expectation] = field(default_factory=list)
    controls: list[Expectation] = field(default_factory=list)
    side_effects: list[Expectation] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    vessels: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "start": iso_time(self.start), "end": iso_time(self.end),
            "zones": self.zones, "rules": self.rules, "receivers": self.receivers,
            "anomalies": [a.to_dict() for a in self.anomalies],
            "controls": [c.to_dict() for c in self.controls],
            "side_effects": [e.to_dict() for e in self.side_effects],
            "skipped": self.skipped, "vessels": self.vessels, "stats": self.stats,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Truth:
        return cls(seed=data["seed"], start=parse_iso(data["start"]),
                   end=parse_iso(data["end"]), zones=data["zones"], rules=data["rules"],
                   receivers=data["receivers"],
                   anomalies=[Expectation.from_dict(a) for a in data["anomalies"]],
                   controls=[Expectation.from_dict(c) for c in data["controls"]],
                   side_effects=[Expectation.from_dict(e, side_effect=True)
                                 for e in data.get("side_effects", [])],
                   skipped=data.get("skipped", {}), vessels=data.get("vessels", []),
                   stats=data.get("stats", {}))

    def judged_rules(self) -> set[str]:
        """The rules the scenario plants anomalies or controls for (or could not): an alert of
        one of them that the truth does not explain is unexpected. Events are not judged."""
        return ({a.rule for a in self.anomalies} | {c.rule for c in self.controls}
                | set(self.skipped))

    @classmethod
    def load(cls, path: Path | str) -> Truth:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass(slots=True)
class Verdict:
    """How a set of alerts compares with the truth.

    ``unexpected`` alerts (of a judged rule, explained by nothing the truth lists) are for
    review and do not fail the score: ordinary traffic the generator does not plan can
    truly meet the rules (two ships crossing close outside the port limit).
    """

    missed: list[Expectation]
    false_alarms: list[tuple[Expectation, dict[str, Any]]]
    unexpected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missed and not self.false_alarms


def check(truth: Truth, alerts: list[dict[str, Any]]) -> Verdict:
    """Every anomaly detected in its window, no alert of the named rule on any control.

    ``alerts`` may be transition lines (``--alerts-out``: new, update, end): false alarms
    and unexpected alerts count each alert (id) once.
    """
    latest = list({alert.get("id") or f"#{i}": alert for i, alert in enumerate(alerts)}.values())
    missed = [a for a in truth.anomalies if not any(a.detected_by(al) for al in alerts)]
    false_alarms = [(c, al) for c in truth.controls for al in latest if c.matches(al)]
    judged = truth.judged_rules()
    known = [*truth.anomalies, *truth.controls, *truth.side_effects]
    unexpected = [al for al in latest if al.get("rule") in judged
                  and not any(e.matches(al) for e in known)]
    return Verdict(missed=missed, false_alarms=false_alarms, unexpected=unexpected)
