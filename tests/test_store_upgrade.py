"""Databases that earlier releases wrote, as they wrote them (``fixtures/upgrade/``, see its
README): this release migrates each in place and goes on from what it saved.

Each fixture is a live run of that release on the demo port (four vessels of the
Gladstone recording), stopped with two alerts acknowledged, one snoozed vessel and alerts
still open: the alerts, their audit trail, the snooze and the rules' saved state must all
come through the upgrade.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from geofence.engine import Engine
from harbourwatch.operator_acts import OperatorActs
from harbourwatch.options import ServiceOptions, resolve_config
from harbourwatch.service import load_zones, restore_state
from store import open_store
from tests.paths import FIXTURES

UPGRADE = FIXTURES / "upgrade"

#: The alerts each fixture's run left open: id -> (rule, mmsi, state, who acknowledged it).
LEFT_OPEN = {
    "16a87e9a3fec12ebf74d": ("speeding", 503536100, "open", None),
    "4ffad3a0482db111bf8c": ("speeding", 503181800, "acknowledged", "duty"),
    "0d87e27d1e165dcc0d1f": ("restricted_entry", 7037143, "acknowledged", "duty"),
    "98e0b167a6611fb81bc0": ("source_silent", None, "open", None),
}


async def _upgraded(db: Path) -> dict[str, Any]:
    """What the store and the rules have after this release opened ``db``."""
    store = open_store(f"sqlite:///{db}", db.parent)
    await store.start()
    try:
        config = resolve_config(ServiceOptions(config=FIXTURES / "demo-port" / "port.yaml"))
        engine = Engine(config.rules, load_zones(config))
        await restore_state(store, engine, OperatorActs())
        return {
            "version": await store.schema_version(),  # type: ignore[attr-defined]
            "parts": sorted(await store.load_engine_state()),
            "vessels": sorted(await store.load_vessel_states()),
            "open": {a["id"]: (a["rule"], a["mmsi"], a["state"], a["acknowledged_by"])
                     for a in await store.open_alerts()},
            "audit": [(r["actor"], r["action"], r["note"])
                      for r in await store.audit("4ffad3a0482db111bf8c")],
            "snoozes": [(s.rule, s.mmsi, s.actor) for s in await store.snoozes()],
            "rules_open": sorted(a.id for a in engine.open_alerts()),
            "picture": sorted(engine.picture.vessels),
        }
    finally:
        await store.stop()


@pytest.mark.parametrize(("fixture", "note", "parts"), [
    # Before the rules' state had a table of its own: the vessels' state alone.
    ("schema-1-a7fc40d.db", "fx1", []),
])
def test_a_database_an_earlier_release_wrote_is_migrated_and_resumed(
        tmp_path: Path, fixture: str, note: str, parts: list[str]) -> None:
    db = tmp_path / "harbourwatch.db"
    shutil.copyfile(UPGRADE / fixture, db)
    got = asyncio.run(_upgraded(db))
    assert got["version"] == 7
    assert got["parts"] == parts
    assert got["vessels"] == [7037143, 503181800, 503536100, 503642000]
    assert got["open"] == LEFT_OPEN
    assert got["audit"] == [("rules", "new", None), ("duty", "ack", f"{note} ack")]
    assert got["snoozes"] == [("zone_entry", 503642000, "duty")]
    # The rules go on with the alerts left open (no second alert for the same condition)
    # and with the vessels they knew.
    assert got["rules_open"] == sorted(LEFT_OPEN)
    assert got["picture"] == got["vessels"]
