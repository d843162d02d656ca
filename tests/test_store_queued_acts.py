"""Operator acts queued with the writer's rows (made while the database was away): written in
queue order with their actor and time, once, and spooled like any row (real SQLite)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from geofence.alert import Alert, AlertEvent, RiskArea, Severity, Transition
from store.base import QueuedAct
from store.rows import Batch, alert_row
from store.spool import Spool
from store.sqlite import SqliteStore

T0 = 1_767_261_600.0
WALL = 1_767_262_000.5
MMSI = 244123456


def dark(mmsi: int = MMSI) -> Alert:
    return Alert(rule="dark_vessel", risk_area=RiskArea.CRIMINAL_ACTIVITY,
                 severity=Severity.WARNING, mmsi=mmsi, started_at=T0)


async def test_queued_acts_are_written_in_order_with_their_actor_and_time(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    alert = dark()
    ended = {**alert.to_dict(), "state": "ended", "ended_at": "2026-01-01T10:10:00Z"}
    items = [
        ("a", alert_row(AlertEvent(Transition.NEW, alert.to_dict(), T0))),
        ("o", QueuedAct("ack", "duty", WALL, "seen", alert_id=alert.id).to_row()),
        ("a", alert_row(AlertEvent(Transition.END, ended, T0 + 600))),
        ("o", QueuedAct("ack", "duty", WALL + 1, alert_id="no-such-alert").to_row()),
        ("o", QueuedAct("snooze", "duty", WALL + 2, "barge", rule="loitering", mmsi=MMSI,
                        until=T0 + 3600).to_row()),
        ("o", QueuedAct("snooze", "duty", WALL + 3, rule="encounter", mmsi=MMSI,
                        until=T0 + 3600).to_row()),
        ("o", QueuedAct("unsnooze", "duty", WALL + 4, rule="encounter", mmsi=MMSI).to_row()),
    ]
    store = SqliteStore(tmp_path / "hw.db", max_age=0.01)
    await store.start()
    try:
        # Through the spool's JSON, as rows left at a stop come back.
        spool = Spool(tmp_path / "spool.jsonl")
        spool.append(items)
        batch = Batch.of(spool.peek(100)[0])
        with caplog.at_level(logging.WARNING):
            await store.write_batch(batch)
            await store.write_batch(batch)  # a batch written again: nothing twice
        row = await store.alert(alert.id)
        trail = await store.audit(alert.id)
        snoozes = await store.snoozes()
        acts = await store.snooze_acts()
    finally:
        await store.stop()
    assert (row["state"], row["acknowledged_by"], row["acknowledged_at"], row["ack_note"]) == (
        "ended", "duty", "2026-01-01T10:06:40.500Z", "seen")
    assert [(a["action"], a["actor"]) for a in trail] == [
        ("new", "rules"), ("ack", "duty"), ("end", "rules")]
    assert [(s.rule, s.actor, s.note, s.created) for s in snoozes] == [
        ("loitering", "duty", "barge", WALL + 2)]
    assert [(a["action"], a["rule"]) for a in acts] == [
        ("unsnooze", "encounter"), ("snooze", "encounter"), ("snooze", "loitering")]
    refused = [m for m in caplog.messages if "no-such-alert" in m]
    assert len(refused) == 2 and "not stored" in refused[0]


async def test_an_act_queued_through_the_store_is_written_by_its_writer(tmp_path: Path) -> None:
    alert = dark()
    store = SqliteStore(tmp_path / "hw.db", max_age=0.01)
    await store.start()
    try:
        store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0))
        store.queue_act(QueuedAct("resolve", "duty", WALL, alert_id=alert.id))
        await store.flush()
        row = await store.alert(alert.id)
    finally:
        await store.stop()
    assert (row["state"], row["resolved_by"], row["resolved_at"]) == (
        "resolved", "duty", "2026-01-01T10:06:40.500Z")
