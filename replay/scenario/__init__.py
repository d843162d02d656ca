"""Synthetic port traffic with injected anomalies and a ground-truth file.

``generate_scenario(zones, seed=..., hours=..., out=..., truth=...)`` writes an NMEA log
(one line per sentence, NMEA 4.10 tag block ``\\s:<receiver>,c:<unix>*hh\\`` first, sorted by
time) and a JSON truth file. The same seed, zones and rules give a byte-identical log and
truth: the only source of chance is one ``random.Random(seed)``.

What a scenario holds (numbers vary with the seed): ships moored in berths, arrivals from
sea along the channel to a berth, departures out to sea past the edge of reception, ships
swinging at anchor, class B craft wandering, a tug escorting an arrival, the pilot boat, two
receivers with overlapping coverage (duplicates where both hear) and their base stations;
plus, for every rule registered in :data:`geofence.rules.REGISTRY` that has an injector, one
anomaly, and the control cases that must not alert.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from replay.scenario.anomalies import (
    INJECTORS,
    Context,
    Skip,
    ordinary_controls,
)
from replay.scenario.layout import LayoutError, build_layout
from replay.scenario.traffic import World, ordinary_traffic
from replay.scenario.truth import Expectation, Truth, Verdict, check
from replay.scenario.writer import Tx, base_station_msgs, render, transmissions

__all__ = ["MAX_HOURS", "Expectation", "LayoutError", "Scenario", "ScenarioSummary", "Truth",
           "Verdict", "build_scenario", "check", "generate_scenario", "registered_rules"]

#: The longest scenario: two days of traffic (12 rounds of anomalies) is a long drill already.
MAX_HOURS = 48.0

#: 2026-01-01T00:00:00Z: default scenarios start on a seed-chosen minute of 2026.
_EPOCH_2026 = 1_767_225_600


def registered_rules() -> list[str]:
    """Rule names in the engine's registry right now (issue 4 rules once they land)."""
    from geofence.rules import REGISTRY

    return [name for name, _ in REGISTRY]


@dataclass(slots=True)
class Scenario:
    """A generated scenario in memory: log lines (no line ends) and the truth."""

    lines: list[str]
    truth: Truth


@dataclass(slots=True)
class ScenarioSummary:
    seed: int
    start: float
    end: float
    lines: int
    messages: int
    vessels: int
    anomalies: dict[str, int]
    controls: dict[str, int]
    skipped: dict[str, str]
    receivers: list[str]
    out: Path | None = None
    truth: Path | None = None
    per_receiver: dict[str, int] = field(default_factory=dict)


def build_scenario(zones: ZoneSet | Path | str, *, seed: int, hours: float,
                   start: float | None = None, config: RulesConfig | None = None,
                   rules: list[str] | None = None, scale: float = 1.0) -> Scenario:
    """Generate in memory. ``rules`` defaults to the registered rules; ``scale`` (0–1]
    thins ordinary traffic (tests use fewer vessels). ``config`` is the port's rules: their
    thresholds, allowed vessels and watch area shape the anomalies and the truth (give the
    config the replay will run with)."""
    if not 0 < hours <= MAX_HOURS:  # NaN too
        raise ValueError(f"hours must be in (0, {MAX_HOURS:g}]")
    zone_set = zones if isinstance(zones, ZoneSet) else ZoneSet.from_geojson(Path(zones))
    config = config or RulesConfig()
    wanted = rules if rules is not None else registered_rules()
    # A rule the config switches off raises nothing: no anomaly of it can be expected.
    rule_names = frozenset(name for name in wanted if config.rule_enabled(name))
    rng = random.Random(seed)
    if start is None:
        start = float(_EPOCH_2026 + rng.randrange(0, 365 * 1440) * 60)
    end = start + hours * 3600.0
    layout = build_layout(zone_set, config, rng)
    world = World(layout, rng, start, end)
    traffic = ordinary_traffic(world, scale=scale)
    ctx = Context(config=config, rules=rule_names, traffic=traffic)
    anomalies: list[Expectation] = []
    controls: list[Expectation] = []
    side_effects: list[Expectation] = []
    skipped: dict[str, str] = {
        rule: f"switched off in the config (rules.{rule}.enabled: false)"
        for rule, _ in INJECTORS if rule in wanted and rule not in rule_names}
    if "dark_vessel" in rule_names:
        controls += ordinary_controls(world, ctx)
    # One round of anomalies per started 4 hours (each round: one per rule).
    rounds = max(1, int(hours // 4) + (1 if hours % 4 else 0)) if hours > 4 else 1
    for _ in range(rounds):
        for rule, inject in INJECTORS:
            if rule not in rule_names:
                continue
            try:
                found = inject(world, ctx)
            except Skip as why:
                skipped.setdefault(rule, str(why))
                continue
            for item in found:
                if item.rule not in rule_names or item in controls:
                    continue
                if item.side_effect:
                    side_effects.append(item)
                else:
                    (anomalies if item.window is not None else controls).append(item)
    injected = {a.rule for a in anomalies}
    skipped = {rule: why for rule, why in skipped.items() if rule not in injected}
    world.finish_plans()
    txs: list[Tx] = []
    for vessel in world.vessels:
        txs.extend(transmissions(world, vessel))
    txs.extend(base_station_msgs(world))
    lines, stats = render(world, txs, rng)
    source = zone_set.source
    truth = Truth(
        seed=seed, start=start, end=end, zones=Path(source).name if source else "<zones>",
        rules=sorted(rule_names), receivers=[r.name for r in layout.receivers],
        anomalies=anomalies, controls=controls, side_effects=side_effects, skipped=skipped,
        vessels=[{"mmsi": v.mmsi, "class": v.ais_class, "role": v.role,
                  "shipname": v.static[0][1].get("shipname")} for v in world.vessels],
        stats={"lines": stats.lines, "transmissions": stats.transmissions,
               "heard": stats.heard, "duplicates": stats.duplicates,
               "per_receiver": stats.per_receiver,
               "outages": [[n, a, b] for n, spans in world.receiver_silences.items()
                           for a, b in spans]})
    return Scenario(lines=lines, truth=truth)


def generate_scenario(zones: ZoneSet | Path | str, *, seed: int, hours: float, out: Path,
                      truth: Path, start: float | None = None,
                      config: RulesConfig | None = None, rules: list[str] | None = None,
                      scale: float = 1.0) -> ScenarioSummary:
    """Generate and write the log (``out``) and the truth JSON (``truth``)."""
    scenario = build_scenario(zones, seed=seed, hours=hours, start=start, config=config,
                              rules=rules, scale=scale)
    out = Path(out)
    truth = Path(truth)
    out.write_text("".join(line + "\n" for line in scenario.lines), encoding="ascii")
    truth.write_text(scenario.truth.dumps(), encoding="utf-8")
    t = scenario.truth
    return ScenarioSummary(
        seed=seed, start=t.start, end=t.end, lines=len(scenario.lines),
        messages=int(t.stats["heard"]), vessels=len({v["mmsi"] for v in t.vessels}),
        anomalies=dict(Counter(a.rule for a in t.anomalies)),
        controls=dict(Counter(c.rule for c in t.controls)), skipped=dict(t.skipped),
        receivers=list(t.receivers), out=out, truth=truth,
        per_receiver=dict(t.stats["per_receiver"]))
