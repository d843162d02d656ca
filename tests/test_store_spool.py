"""The spool across releases: rows an older release can read stay in its format, operator acts
go to a versioned file it never opens, and a line this release cannot read is set aside, never
the end of the writer (real SQLite)."""

from __future__ import annotations

import asyncio
import json
import logging
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from geofence.alert import Alert, AlertEvent, Transition
from store.base import NotFound, QueuedAct, StoreError, StoreUnavailable
from store.rows import alert_row
from store.spool import Spool
from store.sqlite import SqliteStore
from tests.test_store_queued_acts import MMSI, T0, WALL, dark


def recorded_batches(store: SqliteStore,
                     monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """(positions, alerts, acts) of each batch the store is given from now on, in order."""
    batches: list[tuple[int, int, int]] = []
    real = store.write_batch

    async def write_batch(batch: Any) -> int:
        batches.append((len(batch.positions), len(batch.alerts), len(batch.acts)))
        return await real(batch)

    monkeypatch.setattr(store, "write_batch", write_batch)
    return batches


def released_decode(raw: Any) -> tuple[str, Any]:
    """The spool decoder of the releases before operator acts were queued (verbatim): every
    kind it does not know is read as an alert row."""
    kind, row = raw
    if kind == "p":
        return (kind, tuple(row) if len(row) == 12 else (*row, False))
    if kind == "s":
        return (kind, (int(row[0]), float(row[1]), dict(row[2])))
    return (kind, (str(row[0]), float(row[1]), dict(row[2])))


def items_of(alert: Alert) -> list[tuple[str, Any]]:
    ended = {**alert.to_dict(), "state": "ended", "ended_at": "2026-01-01T10:10:00Z"}
    position = (T0, MMSI, -23.8, 151.4, 3.0, None, None, None, 1, ["rx1"], False, False)
    return [
        ("p", position),
        ("a", alert_row(AlertEvent(Transition.NEW, alert.to_dict(), T0))),
        ("o", QueuedAct("ack", "duty", WALL, "seen", alert_id=alert.id).to_row()),
        ("p", (T0 + 10, *position[1:])),
        ("a", alert_row(AlertEvent(Transition.END, ended, T0 + 600))),
    ]


def test_acts_are_spooled_apart_so_an_older_release_reads_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    items = items_of(dark())
    Spool(path).append(items)
    # The older release reads every line of the file it knows, and opens no other.
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [released_decode(line)[0] for line in lines] == ["p", "a", "p", "a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool.acts-v1.jsonl", "spool.jsonl"]
    # This release reads them back in queue order: the act after its alert's new.
    again = Spool(path)
    assert again.pending == 5
    got, mark = again.peek(100)
    assert [kind for kind, _row in got] == ["p", "a", "o", "p", "a"]
    assert got[2] == items[2]
    again.advance(mark)
    assert again.pending == 0 and not list(tmp_path.iterdir())


def test_acts_left_by_a_rollback_are_written_by_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    items = items_of(dark())
    Spool(path).append(items)
    path.unlink()  # the older release wrote the rows it knows, and removed its file
    Spool(path).append([items[3]])  # then spooled rows of an outage of its own
    got, _mark = Spool(path).peek(100)
    assert [kind for kind, _row in got] == ["o", "p"]  # its place is gone: first


async def test_a_spooled_line_this_release_cannot_read_is_set_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "spool.jsonl"
    alert, other = dark(), dark(MMSI + 1)
    good = [json.dumps(["a", list(alert_row(AlertEvent(Transition.NEW, a.to_dict(), T0)))])
            for a in (alert, other)]
    # A future kind, and an act of an action this release does not know (it was once
    # written as an ack).
    path.write_text("\n".join([good[0], json.dumps(["x", {"what": "future"}]),
                               json.dumps(["o", {"action": "frobnicate", "actor": "duty",
                                                 "at": WALL, "alert_id": alert.id}]),
                               good[1]]) + "\n")
    store = SqliteStore(tmp_path / "hw.db", spool_path=path, max_age=0.01)
    with caplog.at_level(logging.ERROR):
        await store.start()
        try:
            await store.flush()
            assert (await store.alert(alert.id))["acknowledged_by"] is None
            assert (await store.alert(other.id))["state"] == "open"
            assert not store._writer._task.done()  # type: ignore[union-attr]
            assert store.stats().rejected == 2
        finally:
            await store.stop()
    said = [m for m in caplog.messages if "cannot read a spooled row" in m]
    assert [m.split(": cannot")[0] for m in said] == [f"store: {path}:2", f"store: {path}:3"]
    kept = (path.with_suffix(".rejected.jsonl")).read_text().splitlines()
    assert len(kept) == 2 and "future" in kept[0]
    assert not path.exists()


def test_an_unknown_act_is_refused_when_made() -> None:
    with pytest.raises(ValueError, match="unknown operator act"):
        QueuedAct("frobnicate", "duty", WALL, alert_id="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs an alert id"):
        QueuedAct("ack", "duty", WALL)


async def test_a_writer_that_fails_is_said_loudly_and_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    alert = dark()
    store = SqliteStore(tmp_path / "hw.db", max_age=0.01)
    writer = store._writer
    monkeypatch.setattr(writer, "_retry_max", 0.05)
    await store.start()
    real = writer._drain
    fails = [RuntimeError("a bug")]

    async def drain(due: bool = True) -> bool:
        if fails:
            raise fails.pop()
        return await real(due)

    monkeypatch.setattr(writer, "_drain", drain)
    try:
        with caplog.at_level(logging.CRITICAL):
            store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0))
            async with asyncio.timeout(30):  # started again 0.05 s after the failure
                while fails or not store.stats().db_up or store.stats().queued:
                    await asyncio.sleep(0.02)
        assert (await store.alert(alert.id))["state"] == "open"
    finally:
        await store.stop()
    assert any("the writer failed" in m for m in caplog.messages)


async def test_a_start_writes_the_spooled_alerts_and_acts_before_the_positions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules' state is read back once the alerts and acts are in; the positions, perhaps
    millions after a long outage, are caught up after, each row once."""
    path = tmp_path / "spool.jsonl"
    alert = dark()
    position = (T0, MMSI, -23.8, 151.4, 3.0, None, None, None, 1, ["rx1"], False, False)
    items: list[tuple[str, Any]] = [("p", (T0 + i, *position[1:])) for i in range(3000)]
    items[1500:1500] = [
        ("a", alert_row(AlertEvent(Transition.NEW, alert.to_dict(), T0))),
        ("o", QueuedAct("ack", "duty", WALL, alert_id=alert.id).to_row())]
    Spool(path).append(items)
    store = SqliteStore(tmp_path / "hw.db", spool_path=path, max_age=0.01, batch_size=500)
    batches = recorded_batches(store, monkeypatch)
    await store.start()
    try:
        await store.spooled_alerts_written()
        # The catch-up of positions may already have begun; it must come after.
        assert batches[0] == (0, 1, 1)
        assert (await store.alert(alert.id))["acknowledged_by"] == "duty"
        await store.flush()
        assert await store.position_count() == 3000
        assert sum(alerts + acts for _p, alerts, acts in batches) == 2  # not again
        assert store.stats().spool_pending == 0 and not path.exists()
    finally:
        await store.stop()


async def test_acts_an_older_release_spooled_in_the_main_file_are_written_ahead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The release before the acts file spooled acts as ``o`` lines in spool.jsonl: at the
    roll-forward's start they are counted and written with the alerts, before the restore
    (an alert acknowledged during the outage must not come back open), and only once."""
    path = tmp_path / "spool.jsonl"
    alert = dark()
    position = (T0, MMSI, -23.8, 151.4, 3.0, None, None, None, 1, ["rx1"], False, False)
    ack = QueuedAct("ack", "duty", WALL, "seen", alert_id=alert.id).to_row()
    path.write_text("".join(json.dumps(item, separators=(",", ":")) + "\n" for item in [
        ["p", list(position)],
        ["a", list(alert_row(AlertEvent(Transition.NEW, alert.to_dict(), T0)))],
        ["o", ack],
        ["p", [T0 + 10, *position[1:]]]]))
    store = SqliteStore(tmp_path / "hw.db", spool_path=path, max_age=0.01)
    spool = store._writer._spool
    assert (spool.acts_pending, spool.alerts_pending, spool.pending) == (1, 1, 4)
    assert store.stats().pending_acts == 1
    batches = recorded_batches(store, monkeypatch)
    await store.start()
    try:
        await store.spooled_alerts_written()
        # The catch-up of positions may already have begun; it must come after.
        assert batches[0] == (0, 1, 1)
        got = await store.alert(alert.id)
        assert got["acknowledged_by"] == "duty"
        assert spool.acts_pending == 0 and spool.alerts_pending == 0
        await store.flush()
        assert await store.position_count() == 2
        assert sum(alerts + acts for _p, alerts, acts in batches) == 2  # not again
        assert store.stats().spool_pending == 0 and not path.exists()
    finally:
        await store.stop()


def ack_of(alert: Alert, at: float = WALL) -> dict[str, Any]:
    return QueuedAct("ack", "duty", at, "seen", alert_id=alert.id).to_row()


def new_of(alert: Alert) -> tuple[str, Any]:
    return ("a", alert_row(AlertEvent(Transition.NEW, alert.to_dict(), T0)))


def test_a_torn_last_act_is_cut_so_the_next_act_is_not_joined_onto_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "spool.jsonl"
    a, b = dark(), dark(MMSI + 1)
    Spool(path).append([("o", ack_of(a))])
    acts = tmp_path / "spool.acts-v1.jsonl"
    whole = acts.read_text()
    with acts.open("a") as fh:  # a write cut short (disk full, power cut): never acked
        fh.write('{"after":0,"head":null,"act":{"action":"ack"')
    spool = Spool(path)  # the start cuts it
    assert acts.read_text() == whole
    assert spool.acts_pending == 1
    assert any("cut 44 bytes" in m for m in caplog.messages)  # said
    spool.append([("o", ack_of(b))])  # e.g. stop() while the database is away
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        again = Spool(path)  # the next start
    assert again.acts_pending == 2 and again.pending == 2
    assert not caplog.records
    got, _mark = again.peek(10)
    assert got == [("o", ack_of(a)), ("o", ack_of(b))]


def test_a_torn_last_row_is_cut_so_the_next_row_is_not_joined_onto_it(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    a, b = dark(), dark(MMSI + 1)
    Spool(path).append([new_of(a)])
    with path.open("a") as fh:
        fh.write('["a",["dark_vessel:2441')
    spool = Spool(path)
    assert spool.pending == 1 and spool.alerts_pending == 1
    spool.append([new_of(b)])
    again = Spool(path)
    assert again.pending == 2 and again.alerts_pending == 2
    got, mark = again.peek(10)  # no unreadable joined line
    assert got == [new_of(a), new_of(b)] and mark.at_end


@pytest.mark.parametrize("fails", ["acts", "main"])
def test_an_append_that_fails_part_way_leaves_nothing_of_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str) -> None:
    """The caller keeps the rows of a failed append (and spools them again): no part line
    for the next append to join, no whole act written twice."""
    import store.spool as spool_module

    path = tmp_path / "spool.jsonl"
    a, b = dark(), dark(MMSI + 1)
    spool = Spool(path)
    spool.append([new_of(a), ("o", ack_of(a))])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = spool_module._write_lines

    def write_lines(target: Path, lines: Any, mode: str) -> None:
        if target.name.startswith("spool.acts") == (fails == "acts"):
            text = "".join(lines)
            with target.open(mode, encoding="utf-8") as fh:
                fh.write(text[: len(text) // 2])
            raise OSError(28, "No space left on device")
        real(target, lines, mode)

    monkeypatch.setattr(spool_module, "_write_lines", write_lines)
    items = [new_of(b), ("o", ack_of(b))]
    with pytest.raises(StoreError, match="No space left"):
        spool.append(items)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert spool.pending == 2 and spool.acts_pending == 1
    monkeypatch.setattr(spool_module, "_write_lines", real)
    spool.append(items)  # spooled again, once
    again = Spool(path)
    assert again.pending == 4 and again.acts_pending == 2
    got, _mark = again.peek(10)
    assert got == [new_of(a), ("o", ack_of(a)), new_of(b), ("o", ack_of(b))]


def test_an_append_failing_otherwise_leaves_the_spool_as_it_was(tmp_path: Path) -> None:
    """An unforeseen error (here a row json cannot encode) is the writer's to handle, the
    spool left as it was: it kept that row's line as the file's first, so the acts spooled
    next named another file and went first at the next start, before the alert they act on."""
    path = tmp_path / "spool.jsonl"
    alert = dark()
    spool = Spool(path)
    with pytest.raises(TypeError):
        spool.append([new_of(dark(MMSI + 1)), ("a", ("new", T0, {"odd": {1, 2}}))])
    assert not list(tmp_path.iterdir()) and spool.pending == 0
    spool.append([new_of(alert), ("o", ack_of(alert))])
    got, _mark = Spool(path).peek(10)
    assert got == [new_of(alert), ("o", ack_of(alert))]


def test_an_append_that_cannot_measure_the_spool_removes_nothing(tmp_path: Path) -> None:
    """A failed append is cut back to the sizes the files had; one that failed measuring
    them took the spool for absent, and removed it with every row it held."""
    path = tmp_path / "spool.jsonl"
    alert = dark()
    Spool(path).append([new_of(alert), ("o", ack_of(alert))])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    failing = [True]

    class Failing(type(path)):  # type: ignore[misc]
        def stat(self, *args: Any, **kwargs: Any) -> Any:
            if failing and self.name == "spool.jsonl":
                failing.clear()
                raise OSError(5, "Input/output error")
            return super().stat(*args, **kwargs)

    spool = Spool(path)
    spool.path = Failing(path)
    with pytest.raises(StoreError, match="Input/output error"):
        spool.append([new_of(dark(MMSI + 1))])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert spool.pending == 2


async def test_an_act_line_this_release_cannot_read_is_set_aside_never_dropped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "spool.jsonl"
    a, b = dark(), dark(MMSI + 1)
    Spool(path).append([new_of(a), new_of(b), ("o", ack_of(a)), ("o", ack_of(b))])
    acts = tmp_path / "spool.acts-v1.jsonl"
    first, second = acts.read_text().splitlines()
    damaged = '{"after":0,"head":null,"act":{"action":"ack"{"after":0,"head":1}}'
    acts.write_text("\n".join([first, damaged, second]) + "\n")
    spool = Spool(path)
    assert spool.acts_pending == 2 and spool.pending == 5
    assert acts.read_text().count(damaged) == 1  # kept until set aside
    store = SqliteStore(tmp_path / "hw.db", spool_path=path, max_age=0.01)
    with caplog.at_level(logging.ERROR):
        await store.start()
        try:
            await store.spooled_alerts_written()
            assert (await store.alert(a.id))["acknowledged_by"] == "duty"
            assert (await store.alert(b.id))["acknowledged_by"] == "duty"
            await store.flush()
            assert store.stats().rejected == 1 and store.stats().spool_pending == 0
        finally:
            await store.stop()
    assert any(f"{acts}:2: cannot read a spooled row" in m for m in caplog.messages)
    kept = path.with_suffix(".rejected.jsonl").read_text().splitlines()
    assert len(kept) == 1 and json.loads(kept[0])["line"] == damaged
    assert not acts.exists() and not path.exists()


@pytest.mark.parametrize("damaged", [["a", "damaged"], ["o", "damaged"], ["o", None]])
async def test_an_unreadable_alert_line_does_not_hold_back_the_alerts_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: list[Any]) -> None:
    """The start-up write-ahead passes over a line it cannot read (the catch-up sets it
    aside in its place): it stopped there, and the alerts after it were restored unwritten.
    An ``o`` line whose row is no object raised AttributeError, which nothing caught: the
    writer restarted on it for ever and wrote nothing more."""
    path = tmp_path / "spool.jsonl"
    first, second = dark(), dark(MMSI + 1)
    position = (T0, MMSI, -23.8, 151.4, 3.0, None, None, None, 1, ["rx1"], False, False)
    path.write_text("\n".join([json.dumps(new_of(first)), json.dumps(damaged),
                               json.dumps(new_of(second)), json.dumps(["p", position])])
                    + "\n")
    store = SqliteStore(tmp_path / "hw.db", spool_path=path, max_age=0.01)
    batches = recorded_batches(store, monkeypatch)
    await store.start()
    try:
        await store.spooled_alerts_written()
        assert batches[0] == (0, 2, 0)  # both alerts ahead of the position, in one go
        await store.flush()
        assert store.stats().rejected == 1 and await store.position_count() == 1
        kept = path.with_suffix(".rejected.jsonl").read_text().splitlines()
        assert [json.loads(json.loads(line)["line"]) for line in kept] == [damaged]
        assert not path.exists()
    finally:
        await store.stop()


async def test_rows_an_overflow_could_not_spool_stay_queued_and_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unforeseen error while spooling on overflow (the writer restarts) loses no row,
    and the outage's alerts still count as queued, so ``catching_up`` ends once they are
    written (taken off the queue first, they were lost and it stayed on for ever)."""
    store = SqliteStore(tmp_path / "hw.db", max_age=0.01, memory_limit=8, batch_size=4)
    writer = store._writer
    monkeypatch.setattr(writer, "_retry_max", 0.05)
    monkeypatch.setattr(writer, "_retry_initial", 0.01)
    down = True
    real_write = store.write_batch

    async def write_batch(batch: Any) -> int:
        if down:
            raise StoreUnavailable("database away (test)")
        return await real_write(batch)

    tried = asyncio.Event()
    real_append = writer._spool.append

    def append(items: list[Any]) -> None:
        if not tried.is_set():
            tried.set()
            raise RuntimeError("an unforeseen failure (test)")
        real_append(items)

    monkeypatch.setattr(store, "write_batch", write_batch)
    monkeypatch.setattr(writer._spool, "append", append)
    await store.start()
    try:
        alert = dark()
        store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0))
        position = (T0, MMSI, -23.8, 151.4, 3.0, None, None, None, 1, ["rx1"], False, False)
        for i in range(20):
            writer.put(("p", (T0 + i, *position[1:])))
        await asyncio.wait_for(tried.wait(), 30)
        down = False
        for _ in range(1500):  # until caught up: a generous deadline, normally ~0.1 s
            await store.flush()
            if not store.stats().catching_up and store.stats().db_up \
                    and not store.stats().queued and not store.stats().spool_pending:
                break
            await asyncio.sleep(0.02)
        assert await store.position_count() == 20
        assert (await store.alert(alert.id))["state"] == "open"
        assert store.stats().catching_up is False
    finally:
        await store.stop()


async def test_rows_a_stop_cannot_spool_are_said_lost_with_their_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "hw.db", max_age=0.01)

    async def write_batch(batch: Any) -> int:
        raise StoreUnavailable("database away (test)")

    def append(items: list[Any]) -> None:
        raise StoreError("cannot write spool (test): No space left on device")

    monkeypatch.setattr(store, "write_batch", write_batch)
    await store.start()
    store.on_alert(AlertEvent(Transition.NEW, dark().to_dict(), T0))
    monkeypatch.setattr(store._writer._spool, "append", append)
    with caplog.at_level(logging.CRITICAL), pytest.raises(StoreError, match="No space"):
        await store.stop()
    assert any("1 rows not written to the database could not be spooled" in m
               and "they are lost" in m for m in caplog.messages)
    assert store.stats().queued == 1  # still held, for a caller that can retry
    assert store._wconn is None and store._rconn is None  # closed all the same


async def test_rows_arriving_during_a_long_catch_up_stay_within_the_memory_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a spool of millions is written, new rows were kept in memory without bound;
    they overflow to the spool behind it, and every row is written once."""
    path = tmp_path / "spool.jsonl"
    position = (T0, MMSI, -23.8, 151.4, 3.0, None, None, None, 1, ["rx1"], False, False)
    Spool(path).append([("p", (T0 + i, *position[1:])) for i in range(3000)])
    store = SqliteStore(tmp_path / "hw.db", spool_path=path, max_age=0.01, batch_size=500,
                        memory_limit=100)
    writer = store._writer
    queued: list[int] = []
    real = store.write_batch
    arriving = iter(range(3000, 4500))

    async def write_batch(batch: Any) -> int:
        queued.append(len(writer._queue))
        if writer._spool.pending and len(queued) <= 5:  # live ingest goes on meanwhile
            for i in islice(arriving, 300):
                writer.put(("p", (T0 + i, *position[1:])))
        return await real(batch)

    monkeypatch.setattr(store, "write_batch", write_batch)
    await store.start()
    try:
        await store.flush()
        for _ in range(1500):  # a generous deadline; normally a few passes
            if not writer._spool.pending and not writer._queue:
                break
            await store.flush()
        assert await store.position_count() == 4500
        assert max(queued) <= 100
    finally:
        await store.stop()


async def test_a_start_catching_up_an_earlier_runs_spool_is_catching_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This run's alerts wait behind the positions an earlier run spooled: until they are
    written ``catching_up`` is on, so the API answers from memory, not from a database that
    lacks them (it was off: only an outage of this run turned it on)."""
    path = tmp_path / "spool.jsonl"
    position = (T0, MMSI, -23.8, 151.4, 3.0, None, None, None, 1, ["rx1"], False, False)
    Spool(path).append([new_of(dark()), *(("p", (T0 + i, *position[1:])) for i in range(10))])
    store = SqliteStore(tmp_path / "hw.db", spool_path=path, max_age=0.01)
    catching = asyncio.Event()
    caught = asyncio.Event()
    real = store.write_batch

    async def write_batch(batch: Any) -> int:
        if batch.positions and not caught.is_set():  # the spooled positions: held here
            catching.set()
            await caught.wait()
        return await real(batch)

    monkeypatch.setattr(store, "write_batch", write_batch)
    await store.start()
    try:
        await store.spooled_alerts_written()
        alert = dark(MMSI + 1)
        store.on_alert(AlertEvent(Transition.NEW, alert.to_dict(), T0 + 60))
        await catching.wait()
        assert store.stats().catching_up
        with pytest.raises(NotFound):  # behind the spooled positions
            await store.alert(alert.id)
        caught.set()
        await store.flush()
        assert (await store.alert(alert.id))["state"] == "open"
        assert not store.stats().catching_up and store.stats().spool_pending == 0
    finally:
        caught.set()
        await store.stop()
