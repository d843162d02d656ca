"""A rule raising as it takes its state back at a restart (or on the zones at start), or a
saved state the rules cannot take back (not JSON, of an older shape, of a rule switched off
or gone), costs that rule its saved state only: the service starts, the rule starts afresh,
said in a warning and counted in ``rule_failures``; every other rule restores as before.

Saved and read back through a real store, as the service does (``save_state`` and
``restore_state``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from geofence.alert import AlertEvent
from geofence.engine import Engine
from geofence.rules import BaseRule, RuleContext, build_rules
from geofence.zones import ZoneSet
from harbourwatch.config import RulesConfig
from harbourwatch.pipeline import Pipeline
from harbourwatch.service import restore_state, save_state
from ingest.ingestor import Ingestor
from ingest.report import Report
from store import Store, open_store
from store.base import VesselStateJSON
from tests.rulekit import port_zones, rect, report, rules_config, span

PAIR = (244000011, 244000022)
SHIP = 244123456
#: Where a restart's warnings come from.
ENGINE_LOG = "geofence.engine"


def said(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the rules said (not the store, which says which database it opened)."""
    return [r for r in caplog.records if r.name == ENGINE_LOG]


def close_pair(start: float, stop: float) -> list[Report]:
    """Two slow vessels 80 m apart in open water, every 10 s: an encounter once held
    ``duration_s`` (900 s), counted from the first report (T0)."""
    out = []
    for t in span(start, stop, 10):
        out.append(report(PAIR[0], t, 8000, 8000, speed=0.5))
        out.append(report(PAIR[1], t, 8080, 8000, speed=0.5))
    return out


def feed(engine: Engine, reports: Iterable[Report]) -> list[AlertEvent]:
    out: list[AlertEvent] = []
    for rep in reports:
        out += engine.process(rep)
    return out


def encounters(events: list[AlertEvent]) -> list[tuple[str, object]]:
    return [(str(e.transition), e.alert["started_at"]) for e in events
            if e.alert["rule"] == "encounter"]


class Keeps(BaseRule):
    """A rule with state of its own (``[1, 2, 3]``) that raises at a restart where told:
    rebuilding (``restore``), taking back its third item (``load``), on the zones
    (``zones``, at start too)."""

    name = "keeps"

    def __init__(self, where: str = "") -> None:
        self.where = where
        self.kept: list[int] = [1, 2, 3]
        self.restores = 0

    def on_restore(self, ctx: RuleContext) -> None:
        self.restores += 1
        self.kept = []
        if self.where == "restore":
            raise ValueError("cannot convert float NaN to integer")

    def saved_state(self) -> Any:
        return self.kept

    def load_state(self, ctx: RuleContext, state: Any) -> None:
        for item in state:
            if self.where == "load" and item == 3:
                raise KeyError("since")
            self.kept.append(item)

    def on_zones(self, ctx: RuleContext) -> None:
        if self.where == "zones":
            raise ValueError("cannot convert float NaN to integer")


class Alerts:
    """A sink: the alert transitions that reached the outputs."""

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def on_report(self, report: Report) -> None:
        pass

    def on_alert(self, event: AlertEvent) -> None:
        self.events.append(event)


Tamper = Callable[[Store, Path], Awaitable[None]]


async def restarted(url: str, tmp_path: Path, second: Engine, tamper: Tamper | None = None,
                    first_rules: list[Any] | None = None) -> None:
    """The close pair for 600 s, saved to the store at ``url``, ``tamper``-ed with there,
    and read back into ``second``."""
    store = open_store(url, tmp_path)
    await store.start()
    try:
        config = rules_config()
        first = Engine(config, port_zones(), rules=first_rules)
        assert feed(first, close_pair(0, 600)) == []
        feed(first, [report(SHIP, 600, 20000, 8000, sources=("rx2",))])  # far off, alone
        await save_state(store, first)
        if tamper is not None:
            await tamper(store, tmp_path)
        await restore_state(store, second)
    finally:
        await store.stop()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hw.db'}"


def damaged(part: str) -> Tamper:
    """A saved part cut short in the SQLite file (a disk fault, a hand edit)."""
    async def tamper(_store: Store, tmp_path: Path) -> None:
        with sqlite3.connect(tmp_path / "hw.db") as conn:
            (text,) = conn.execute("SELECT state FROM engine_state WHERE part = ?",
                                   (part,)).fetchone()
            conn.execute("UPDATE engine_state SET state = ? WHERE part = ?",
                         ('[[244000011, 2440', part))
        assert json.loads(text) is not None  # saved whole, as JSON
    return tamper


def kept_clock(second: Engine) -> list[tuple[str, object]]:
    """The encounter after the restart: held since T0 (its clock kept), alerted at 900 s."""
    return encounters(feed(second, close_pair(610, 1000)))


HELD_SINCE_T0 = [("new", "2026-01-01T12:00:00Z")]


async def test_a_damaged_saved_part_costs_only_its_rule_its_state(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A saved part that was not JSON stopped the start (a JSONDecodeError out of the
    store): the live service did not come up, a resumed replay did not resume. Now its
    rule starts afresh, said and counted; the other rules restore as before."""
    second = Engine(rules_config(), port_zones())
    with caplog.at_level("WARNING", logger=ENGINE_LOG):
        await restarted(sqlite_url(tmp_path), tmp_path, second,
                        damaged("rule:collision_risk"))
    assert kept_clock(second) == HELD_SINCE_T0  # encounter's pair came back
    assert [r.getMessage() for r in said(caplog)] == [
        "rule collision_risk: its saved state cannot be read (JSONDecodeError: Expecting "
        "',' delimiter: line 1 column 18 (char 17)); it starts afresh: what it knew before "
        "the restart is lost (counted in rule_failures)"]
    assert said(caplog)[0].exc_info is None  # no rule's bug: no traceback
    assert second.start_failures == 1
    assert Pipeline(Ingestor(), second).stats()["rule_failures"] == 1


async def test_a_rule_whose_saved_part_is_damaged_starts_afresh(tmp_path: Path) -> None:
    """The pair's clock starts again at the restart: alerted 900 s after it, not before."""
    second = Engine(rules_config(), port_zones())
    await restarted(sqlite_url(tmp_path), tmp_path, second, damaged("rule:encounter"))
    assert kept_clock(second) == []
    assert encounters(feed(second, close_pair(1010, 1600))) == [("new",
                                                                 "2026-01-01T12:10:10Z")]
    assert second.start_failures == 1


@pytest.mark.parametrize("where, what, restores", [
    ("restore", "raised rebuilding its state (ValueError: cannot convert float NaN to "
     "integer)", 1),
    # What it took before the failure goes too: on_restore again (its state afresh).
    ("load", "raised taking back its saved state (KeyError: 'since')", 2),
])
async def test_a_rule_raising_as_it_takes_its_state_back_starts_afresh_alone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str, what: str,
        restores: int) -> None:
    """``on_restore`` and ``load_state`` were called unguarded: one rule raising there
    stopped the start (or a resumed replay), and the rules after it restored nothing."""
    config = rules_config()
    keeps = Keeps(where)
    second = Engine(config, port_zones(), rules=[keeps, *build_rules(config)])
    with caplog.at_level("WARNING", logger=ENGINE_LOG):
        await restarted(sqlite_url(tmp_path), tmp_path, second,
                        first_rules=[Keeps(), *build_rules(config)])
    assert (keeps.restores, keeps.kept) == (restores, [])  # [1, 2, 3] saved
    (record,) = said(caplog)
    assert record.getMessage() == (f"rule keeps: {what}; it starts afresh: what it knew "
                                   "before the restart is lost (counted in rule_failures)")
    assert record.exc_info is not None  # a rule's bug: its traceback
    sink = Alerts()
    pipeline = Pipeline(Ingestor(), second, [sink], live=True)
    for rep in close_pair(610, 1000):
        pipeline.handle_report(rep)
    assert encounters(sink.events) == HELD_SINCE_T0
    assert pipeline.stats()["rule_failures"] == 1


def old_shape(part: str, value: Any) -> Tamper:
    """A part saved in another shape (by an older version), through the store itself."""
    async def tamper(store: Store, _tmp_path: Path) -> None:
        parts = await store.load_engine_state()
        await store.save_engine_state(0.0, {**parts, part: value})
    return tamper


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return str(request.getfixturevalue("pg_dsn"))


async def test_a_saved_part_of_an_older_shape_costs_only_its_rule_its_state(
        store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A hold of collision_risk saved without its closest approach: the first one taken,
    the second raised. The rule starts afresh (no half of it kept); encounter's pair and
    the receivers come back."""
    second = Engine(rules_config(), port_zones())
    holds = [[PAIR[0], PAIR[1], 1_767_268_000.0, 120.0], [244000033, 244000044, 1.0]]
    with caplog.at_level("WARNING", logger=ENGINE_LOG):
        await restarted(store_url, tmp_path, second, old_shape("rule:collision_risk", holds))
    (collision,) = [r for r in second.rules if r.name == "collision_risk"]
    assert collision.saved_state() == []
    assert [r.getMessage().split("; it starts")[0] for r in said(caplog)] == [
        "rule collision_risk: raised taking back its saved state (ValueError: not enough "
        "values to unpack (expected 4, got 3))"]
    assert second.picture.receivers["rx1"].messages == 122  # continuity restored
    assert kept_clock(second) == HELD_SINCE_T0
    assert second.start_failures == 1


async def test_the_state_of_a_rule_switched_off_or_gone_is_said_and_left(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Taken silently, a rule switched on again later had lost its state with no word."""
    second = Engine(rules_config(collision_risk={"enabled": False}), port_zones())
    with caplog.at_level("WARNING", logger=ENGINE_LOG):
        await restarted(sqlite_url(tmp_path), tmp_path, second,
                        old_shape("rule:retired_rule", {"pairs": []}))
    assert [r.getMessage() for r in said(caplog)] == [
        "the state rule collision_risk saved is not restored: the rule is switched off "
        "(it is dropped at the next save)",
        "the state rule retired_rule saved is not restored: this version has no such rule "
        "(it is dropped at the next save)"]
    assert second.start_failures == 0  # no rule failed
    assert kept_clock(second) == HELD_SINCE_T0


async def test_damaged_receivers_are_rebuilt_from_their_vessels(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The receivers' part not JSON stopped the start too: rebuilt from the vessels'
    receivers instead, as from state saved before their continuity was kept."""
    second = Engine(rules_config(), port_zones())
    with caplog.at_level("WARNING", logger=ENGINE_LOG):
        await restarted(sqlite_url(tmp_path), tmp_path, second, damaged("receivers"))
    assert [r.getMessage() for r in said(caplog)] == [
        "the receivers' saved continuity could not be read (JSONDecodeError: Expecting ',' "
        "delimiter: line 1 column 18 (char 17)): they are rebuilt from their vessels' "
        "receivers"]
    rx1 = second.picture.receivers["rx1"]
    assert (rx1.last_heard, rx1.up_since) == (1_767_269_400.0, float("-inf"))
    assert kept_clock(second) == HELD_SINCE_T0
    assert second.start_failures == 0


def test_a_receiver_saved_in_another_shape_is_rebuilt_and_the_others_restored(
        caplog: pytest.LogCaptureFixture) -> None:
    """One receiver's continuity without its message count: the unpacking raised out of
    the restore, and the receivers after it, the vessels and the rules restored nothing."""
    first = Engine(rules_config(), port_zones())
    feed(first, close_pair(0, 600))
    feed(first, [report(SHIP, 600, 5000, 5000, sources=("rx2",))])
    saved = json.loads(json.dumps(first.saved_state()))
    saved["receivers"]["rx1"] = saved["receivers"]["rx1"][:2]
    vessels = json.loads(json.dumps([v.to_state() for v in first.picture.vessels.values()]))
    second = Engine(rules_config(), port_zones())
    with caplog.at_level("WARNING", logger=ENGINE_LOG):
        second.restore(vessels, [], saved)
    assert [r.getMessage() for r in said(caplog)] == [
        "the saved continuity of receiver rx1 (ValueError: not enough values to unpack "
        "(expected at least 3, got 2)) could not be read: rebuilt from their vessels' "
        "receivers"]
    rx1, rx2 = second.picture.receivers["rx1"], second.picture.receivers["rx2"]
    assert (rx1.last_heard, rx1.up_since) == (1_767_269_400.0, float("-inf"))
    assert (rx2.messages, rx2.up_since) == (1, 1_767_269_400.0)  # as saved
    assert kept_clock(second) == HELD_SINCE_T0
    assert second.start_failures == 0


def damaged_vessel(mmsi: int) -> Tamper:
    async def tamper(_store: Store, tmp_path: Path) -> None:
        with sqlite3.connect(tmp_path / "hw.db") as conn:
            conn.execute("UPDATE vessel_state SET state = '{\"mmsi\": 2441' WHERE mmsi = ?",
                         (mmsi,))
            assert conn.total_changes == 1
    return tamper


def newer_vessel(mmsi: int) -> Tamper:
    """A vessel saved by a later version, with a field this one does not know (a rollback)."""
    async def tamper(store: Store, _tmp_path: Path) -> None:
        state = (await store.load_vessel_states())[mmsi].state
        assert isinstance(state, dict)
        await store.save_vessel_states([VesselStateJSON(
            mmsi, 1.0, json.dumps({**state, "heading_source": "gyro"}))])
    return tamper


@pytest.mark.parametrize("tamper, reason", [
    (damaged_vessel(SHIP), "JSONDecodeError: Expecting ',' delimiter: line 1 column 14 "
                           "(char 13)"),
    (newer_vessel(SHIP), "TypeError: Vessel.__init__() got an unexpected keyword argument "
                         "'heading_source'"),
])
async def test_a_vessel_saved_state_that_cannot_be_read_costs_only_that_vessel(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, tamper: Tamper, reason: str) -> None:
    """One vessel's row not JSON, or with a field this version does not know (saved by a
    later one, then rolled back), stopped the start: no vessel, alert or rule restored."""
    second = Engine(rules_config(), port_zones())
    with caplog.at_level("WARNING", logger=ENGINE_LOG):
        await restarted(sqlite_url(tmp_path), tmp_path, second, tamper)
    assert [r.getMessage() for r in said(caplog)] == [
        f"the saved state of 1 vessel could not be read (MMSI {SHIP}: {reason}): left out, "
        "each starts afresh when heard again"]
    assert sorted(second.picture.vessels) == list(PAIR)
    assert second.picture.receivers["rx2"].messages == 1  # the engine's state restored
    assert kept_clock(second) == HELD_SINCE_T0
    assert second.start_failures == 0  # no rule failed


async def test_a_vessel_saved_by_a_later_version_is_left_out_on_postgresql_too(
        pg_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    second = Engine(rules_config(), port_zones())
    with caplog.at_level("WARNING", logger=ENGINE_LOG):
        await restarted(pg_dsn, tmp_path, second, newer_vessel(SHIP))
    assert [r.getMessage().split(" (MMSI")[0] for r in said(caplog)] == [
        "the saved state of 1 vessel could not be read"]
    assert sorted(second.picture.vessels) == list(PAIR)
    assert kept_clock(second) == HELD_SINCE_T0


def without_security_2() -> tuple[ZoneSet, ZoneSet]:
    extra = rect("security_2", "security", -100, -100, 300, 300)  # over berth_1
    return port_zones(extra), port_zones()


def test_a_rule_raising_on_the_zones_at_start_or_restart_costs_only_its_own_part(
        caplog: pytest.LogCaptureFixture) -> None:
    """``on_zones`` at start and at a restart were called unguarded: a rule raising there
    stopped the start, and at a restart left the rules after it holding alerts of a zone
    gone while the service was down (restricted_entry's stayed open for good)."""
    before, after = without_security_2()
    config = RulesConfig()
    first = Engine(config, before)
    feed(first, [report(SHIP, t, 100, 20, speed=0.0) for t in span(0, 30, 10)])
    assert [a.rule for a in first.open_alerts()] == ["restricted_entry"]
    vessels = json.loads(json.dumps([v.to_state() for v in first.picture.vessels.values()]))
    with caplog.at_level("WARNING", logger=ENGINE_LOG):
        second = Engine(config, after, rules=[Keeps("zones"), *build_rules(config)])
        assert second.start_failures == 1
        second.restore(vessels, first.open_alerts(), first.saved_state())
    ended = feed(second, [report(SHIP, 40, 100, 20, speed=0.0)])
    assert [(str(e.transition), e.alert["rule"], e.alert["details"]["end_reason"])
            for e in ended] == [("end", "restricted_entry", "zones changed")]
    assert [r.getMessage() for r in said(caplog)] == [
        f"rule keeps: raised on the zones at {when} (ValueError: cannot convert float NaN to "
        "integer); the other rules took the zones (counted in rule_failures)"
        for when in ("start", "the restart")]
    assert second.start_failures == 2
