"""The service: every stage built from the config and joined into one pipeline.

``run`` reads live sources; ``replay`` plays recorded logs through the same pipeline on
message time. Both get the store (SQLite by default), and as configured the MQTT feed,
the HTTP API and an ``--alerts-out`` file. On start-up the rules' state is restored from the
store so a restart neither resets dark-vessel timers nor leaves alerts dangling; it is saved
again periodically and on a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geofence.alert import Alert, AlertEvent, Transition
from geofence.engine import Engine, unread_reason, vessels_left_out
from geofence.zones import ZoneSet
from harbourwatch.alerts_file import AlertsFileSink
from harbourwatch.config import Config, api_authenticator, zones_file
from harbourwatch.exercise import PART, exercise_of, why_new
from harbourwatch.gctune import tune_gc
from harbourwatch.operator_acts import OperatorActs
from harbourwatch.options import ServiceOptions, build_sources
from harbourwatch.pipeline import Pipeline
from harbourwatch.sinks import Sink
from harbourwatch.snoozes import SnoozeBook
from harbourwatch.timeutil import iso_time, parse_iso
from ingest.ingestor import Ingestor, sources_final_after
from ingest.sources.base import SourceError
from ingest.sources.queue import LineQueue
from ingest.sources.runner import run_sources
from store import VesselStateJSON, open_store
from store.base import Store, StoreUnavailable

if TYPE_CHECKING:
    from api.auth import Authenticator
    from api.deps import ApiDeps
    from api.mqtt import MqttFeed
    from api.picture import LivePicture
    from api.stream import StreamHub
    from replay.decoding import DecodingProcess

log = logging.getLogger(__name__)

#: Wall seconds between saves of the rules' per-vessel state (restart safety).
STATE_SAVE_S = 30.0
#: Longest pause between tries of a live start whose database is not up.
START_RETRY_MAX_S = 30.0
#: Wall seconds between drops of positions older than ``store.retention_days``.
PRUNE_S = 3600.0
#: Vessels encoded between the event loop's turns during a save (~70 µs each: ~15 ms).
STATE_SAVE_CHUNK = 200
#: Wall seconds a stopped replay has to end by itself, between two message times (so that
#: ``--start`` resumes it exactly), before it is cancelled.
STOP_GRACE_S = 5.0


@dataclass(slots=True)
class ReplayPlan:
    logs: list[str]
    speed: float | None
    start: float | None
    nominal_rate: float
    progress: bool | None = None


def load_zones(config: Config) -> ZoneSet:
    path = zones_file(config)
    if path is None:
        log.warning("no zones configured: only zone-free rules can fire")
        return ZoneSet.empty(config.port.projection)
    zones = ZoneSet.from_geojson(path, projection=config.port.projection)
    if not len(zones):
        log.warning("%s: no zone in the file: only zone-free rules can fire", path)
    return zones


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of the file's bytes; None when it cannot be read (logged)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        log.warning("zones: cannot read %s to note its content: %s", path, exc)
        return None


async def _zones_in_force(store: Store, config: Config, zones: ZoneSet) -> ZoneSet:
    """Live: the zones last saved over the API (PUT /zones), unless the zones file's content
    changed since they were saved; else the file's. A security zone the duty officer added
    went away at the next restart. By content, not mtime: a touch, a config tool writing
    the same file again or a restore from backup made the file "newer" and dropped them."""
    saved = await store.latest_zones()
    if saved is None:
        return zones
    path = config.port.zones
    version = (f"version {saved['version']} saved over the API by {saved['actor']} at "
               f"{saved['time']}")
    was = saved.get("file_sha256")
    if path is None:
        log.warning("zones: using %s (no zones file)", version)
    elif was is None:
        # Saved before the file's content was kept with it (or while the file could not be
        # read): its mtime is all there is to go by.
        if path.stat().st_mtime >= parse_iso(str(saved["time"])):
            log.warning("zones: %s was modified after %s (which has no record of the file's "
                        "content); using the file", path, version)
            return zones
        log.warning("zones: using %s (%s not modified since; the version has no record of "
                    "the file's content)", version, path)
    elif await asyncio.to_thread(file_sha256, path) != was:
        log.warning("zones: %s has changed since %s; using the file", path, version)
        return zones
    else:
        log.warning("zones: using %s (%s unchanged since)", version, path)
    in_force = ZoneSet.from_geojson(saved["geojson"], projection=zones.crs, log_warnings=False)
    _warn_news(in_force, zones)
    return in_force


def _warn_news(zones: ZoneSet, said: ZoneSet) -> None:
    """Log the warnings of ``zones`` that ``said`` (loaded and logged at the same start) did
    not have: a version saved from the file has the file's, which came twice."""
    known = {w.removeprefix(f"{said.source}: ") for w in said.warnings}
    for warning in zones.warnings:
        if warning.removeprefix(f"{zones.source}: ") not in known:
            log.warning("%s", warning)


def run_scope(drill: bool, replay: bool) -> str:
    """Whose saved state, part of the MQTT outbox, MQTT client id and spool a run has."""
    return "drill" if drill else "replay" if replay else "live"


def make_store(config: Config, config_dir: Path, drill: bool, *,
               replay: bool = False) -> Store:
    """The configured store; a replay writes SQLite batches inline (see SqliteStore). Each
    kind of run has a spool of its own (``store.spool_file``): a drill with the port's config
    wrote the live service's spooled rows into the drill database."""
    url = None if config.store.url is None else config.store.url.get_secret_value()
    retention = (None if config.store.retention_days is None
                 else timedelta(days=config.store.retention_days))
    return open_store(url, config_dir, retention=retention,
                      spool_dir=config.store.spool_dir, scope=run_scope(drill, replay),
                      drill=drill,
                      batch_size=config.store.batch_size,
                      max_age=config.store.flush_interval_s,
                      memory_limit=config.store.buffer_rows, inline_writes=replay,
                      hold_s=sources_final_after(config.ingest.dedup_window_s))


async def restore_state(store: Store, engine: Engine, acts: OperatorActs | None = None, *,
                        scope: str = "live", until: float | None = None,
                        snoozes: SnoozeBook | None = None,
                        latest: float | None = None) -> list[dict[str, Any]]:
    """Give the rules back what they knew before the last stop (or crash), ``acts`` the
    operators' acts on the alerts still open and ``snoozes`` which of them were muted;
    those alerts, as the store has them.

    ``scope``: whose saved state ("live", "replay", "drill"). ``until``: a replay resumed
    there takes only alerts started by then (not the live service's, in the same database,
    since). ``latest``: saved times after it are taken as it (see ``Engine.restore``).
    """
    states = await store.load_vessel_states(scope)
    unread = {s.mmsi: unread_reason(s.state) for s in states.values()
              if isinstance(s.state, Exception)}
    vessels_left_out(unread)  # not JSON (see ``Store.load_vessel_states``)
    saved = await store.load_engine_state(scope)
    # The alerts this scope had open when it saved: a replay resumed in the live database
    # must not take the live service's (state saved before this was kept: those started by
    # ``until``). Live: every open alert, also those opened after the last save.
    kept = None if scope == "live" else _readable(saved, "open_alerts",
                                                  "the alerts started by --start are taken")
    owned = None if kept is None else set(kept)
    stored = [a for a in await store.open_alerts() if bool(a.get("drill")) == engine.drill
              and (a["id"] in owned if owned is not None
                   else until is None or parse_iso(a["started_at"]) <= until)]
    # A resolved alert's condition may still hold: the rules follow it to its end as they
    # did before the stop (they know no operator acts; ``acts`` lays the resolve over).
    alerts = [Alert.from_dict({**a, "state": "open"} if a["state"] == "resolved" else a)
              for a in stored]
    if acts is not None:
        for alert in stored:
            acts.record(alert)
    if snoozes is not None:
        snoozes.remember_muted(_readable(
            saved, "muted_alerts", "which open alerts a snooze muted: none is taken as "
            "muted") or ())
    if states or alerts or saved:
        readable = [s.state for s in states.values() if not isinstance(s.state, Exception)]
        engine.restore(readable, alerts, saved, latest=latest)
        log.info("restored %d vessels and %d open alerts from the store", len(states),
                 len(alerts))
    return stored


def _readable(saved: Mapping[str, Any], part: str, instead: str) -> Any:
    """A saved part, or None when there is none or it cannot be read (said, with what is
    done ``instead``; see ``Store.load_engine_state``)."""
    value = saved.get(part)
    if isinstance(value, Exception) or (value is not None and not isinstance(value, list)):
        log.warning("the saved state part %s could not be read (%s): %s", part,
                    unread_reason(value) if isinstance(value, Exception)
                    else f"a {type(value).__name__} where a list was saved", instead)
        return None
    return value


async def save_state(store: Store, engine: Engine, scope: str = "live",
                     muted: Iterable[str] = (),
                     exercise: Mapping[str, Any] | None = None) -> None:
    """A snapshot of the rules' state (vessels the rules forgot are not kept), which open
    alerts a snooze muted (``muted``), and a drill's ``exercise`` (see harbourwatch.exercise).

    Each vessel is encoded whole at once; the event loop gets a turn every
    ``STATE_SAVE_CHUNK`` vessels, so reports go on being judged while a large picture is
    saved (a vessel first heard meanwhile waits for the next save).
    """
    vessels = list(engine.picture.vessels.values())
    states: list[VesselStateJSON] = []
    for start in range(0, len(vessels), STATE_SAVE_CHUNK):
        if start:
            await asyncio.sleep(0)
        states.extend(VesselStateJSON(v.mmsi, v.last_seen, json.dumps(v.to_state()))
                      for v in vessels[start:start + STATE_SAVE_CHUNK])
    await store.save_vessel_states(states, replace=True, scope=scope)
    open_ids = {alert.id for alert in engine.open_alerts()}
    parts = {**engine.saved_state(), "open_alerts": sorted(open_ids),
             "muted_alerts": sorted(open_ids.intersection(muted))}
    # As of the newest message time (none yet: 0, which PostgreSQL can store; -inf not).
    as_of = engine.newest if math.isfinite(engine.newest) else 0.0
    if exercise is not None:
        parts[PART] = {**exercise, "as_of": as_of}
    await store.save_engine_state(as_of, parts, scope)


async def _periodically(every_s: float, what: str, work: Callable[[], Awaitable[None]], *,
                        at_once: bool = False) -> None:
    """``work`` every ``every_s`` wall seconds, until cancelled. A failure is logged and
    tried again next time; a database outage (which the writer reports too) once when it
    starts and once when the work is done again (it was logged every 30 s)."""
    if not at_once:
        await asyncio.sleep(every_s)
    away = False
    while True:
        try:
            await work()
            if away:
                log.warning("could %s again", what)
            away = False
        except StoreUnavailable as exc:
            if not away:
                log.warning("could not %s (%s); will retry", what, exc)
            away = True
        except Exception:
            log.exception("could not %s; will retry", what)
        await asyncio.sleep(every_s)


async def _save_all(store: Store, engine: Engine, pipeline: Pipeline, scope: str,
                    exercise: Mapping[str, Any] | None) -> None:
    """The rules' state, and the receivers' health but a drill's (its receivers are an
    exercise's: the health snapshots have no drill marker)."""
    await save_state(store, engine, scope, muted=pipeline.snoozes.muted_ids,
                     exercise=exercise)
    if scope != "drill":
        await store.save_source_health(time.time(), pipeline.stats()["sources"])


async def _prune(store: Store, keep_s: float) -> None:
    """``store.retention_days`` on the wall clock, as TimescaleDB's policy counts it; the
    live service only (a replay or drill of an old log would lose its positions at once)."""
    dropped = await store.prune(time.time() - keep_s)
    if dropped:
        log.info("store: dropped %d positions older than the retention", dropped)


async def run_service(config: Config, options: ServiceOptions, *,
                      replay: ReplayPlan | None = None) -> int:
    """Run until the sources end (replay) or a signal arrives. Exit code.

    The rules' state is carried across runs of the port's live service (restored at start,
    saved periodically and at stop). A replay saves its own (scope "replay") and starts from
    a clean slate, so the same log gives the same alerts, unless it resumes one
    (``--start``); a drill replay likewise (scope "drill"), each run from the beginning a new
    exercise (see harbourwatch.exercise). A live drill (``run --drill``) reads and writes
    none: each start is an exercise of its own.
    """
    drill = options.drill
    #: Whose saved state and part of the MQTT outbox (and whose MQTT client id).
    scope = run_scope(drill, replay is not None)
    saves_state = replay is not None or not drill
    #: The port's own service: its zones, snoozes kept and retention (not a replay or drill).
    live_service = replay is None and not drill
    restores_state = saves_state and (replay is None or replay.start is not None)
    exercise = exercise_of(replay.logs) if drill and replay is not None else None
    config_dir = options.config.resolve().parent if options.config else Path.cwd()
    sources = [] if replay is not None else build_sources(config, options)
    queue = LineQueue(config.ingest.queue_size)
    zones = load_zones(config)
    engine = Engine(config.rules, zones, drill=drill)
    ingestor = Ingestor(fragment_ttl_s=config.ingest.fragment_ttl_s,
                        max_pending_groups=config.ingest.max_pending_groups,
                        dedup_window_s=config.ingest.dedup_window_s,
                        nominal_rate=None if replay is None else replay.nominal_rate,
                        max_clock_lead_s=config.ingest.max_clock_lead_s,
                        max_clock_lag_s=config.ingest.max_clock_lag_s,
                        max_receivers=config.ingest.max_receivers)
    # Forked before the store starts its threads (see replay.decoding).
    decoder = _start_decoding(replay, ingestor)
    stop = asyncio.Event()
    signalled: list[str] = []
    started_store = False
    try:
        _on_signals(stop, signalled)
        with contextlib.ExitStack() as probes:  # all held at once: two sources may clash
            for source in sources:
                held = source.probe()
                if held is not None:
                    probes.enter_context(held)
        auth = None
        if config.api.enabled:
            from api.server import check_address
            check_address(config.api.host, config.api.port, config.where("api.port"))
            auth = api_authenticator(config)
        store = make_store(config, config_dir, drill, replay=replay is not None)
        # Each try through the signals' reach: a database that takes the connection and
        # does not answer (packets dropped, another start's migration holding its lock)
        # held the start until a timeout, up to a minute, deaf to SIGTERM.
        started_store = await _start_store(store, stop, wait=live_service)
    finally:
        if not started_store and decoder is not None:
            decoder.close()
    if not started_store:
        await store.stop()  # what the start had opened (nothing was queued)
        log.warning("stopped while the store was starting (is the database away?): nothing "
                    "read, restored or saved")
        return 0
    origin = config.origin("store.url") or ""  # the environment's wins over the file's
    # Said here only (the stores say nothing of it): with -v it came twice.
    log.warning("store: %s%s", store.description,
                f" (from the {origin})" if origin.startswith("environment") else "")
    snoozes = SnoozeBook()
    pipeline = Pipeline(ingestor, engine, [store], live=replay is None, snoozes=snoozes)
    sinks = pipeline.sinks
    started: list[Sink] = [store]
    tasks: list[asyncio.Task[Any]] = []
    api_task: asyncio.Task[None] | None = None
    failures: list[str] = []
    mqtt_feed: Any = None
    try:
        if live_service:
            zones = await _zones_in_force(store, config, zones)
            pipeline.set_zones(zones)  # a rule raising on them is counted, not fatal
        restored: list[dict[str, Any]] = []
        if drill:
            restores_state = await _resumes_exercise(store, engine, exercise, replay)
        if restores_state:
            # The alerts and the acts made while the database was away that the last run
            # spooled are written first (read back before, an acknowledged alert came back
            # open); its positions, perhaps millions, are caught up in the background.
            # Tried until the database takes them, but a signal still stops the start.
            # Nothing is saved at the stop until the state is read back: saved over, a
            # start that failed or was stopped before then wiped the state saved last.
            saves_state = False
            if not await _until_stopped(store.spooled_alerts_written(), stop):
                waiting = store.stats()
                if waiting.spool_pending or waiting.pending_acts:
                    log.warning("stopped before the rules' state was restored: the alerts "
                                "and acts an earlier run spooled are not written yet (is the "
                                "database away?); they stay spooled for the next start")
                else:  # a signal in the moment this took: nothing waits, nothing was lost
                    log.warning("stopped before the rules' state was restored (nothing was "
                                "saved over it)")
                return 0
            restored = await restore_state(
                store, engine, pipeline.operator_acts, scope=scope,
                until=None if replay is None else replay.start, snoozes=snoozes,
                # Live: nothing can have been heard after now (give or take the clocks).
                latest=time.time() + config.ingest.max_clock_lead_s if replay is None
                else None)
            saves_state = True
            if replay is not None and replay.start is not None and not drill \
                    and not await store.load_engine_state(scope):
                # Every save writes this part: none means no replay of this database ever
                # saved (a new one, or only releases before schema 2, whose replays saved
                # nothing), so --start has nothing to resume.
                log.warning("replay: no replay saved its state in this database, so --start "
                            "%s cannot resume one: the rules start there from a clean slate "
                            "(a replay cut short by a release before schema version 2 saved "
                            "none)", iso_time(replay.start))
            if replay is not None and replay.start is not None \
                    and engine.newest > replay.start:
                # Saved by a replay that went on past --start (the same one run again):
                # the rules know its end, and the lines from --start raise nothing again.
                log.warning("the replay state saved in this database is as of %s, after "
                            "--start %s: what the logs hold before then is not judged "
                            "again; resume a replay cut short, or use a new --db",
                            iso_time(engine.newest), iso_time(replay.start))
            if drill:
                # Its trainees' acts before the cut stay theirs; the store's snoozes are the
                # live service's (a drill's are its own, in memory).
                store.continue_exercise(a["id"] for a in restored)
            else:
                snoozes.load(await store.snoozes())
        tune_gc()
        act_records: list[Callable[[Mapping[str, Any]], None]] = []
        if options.alerts_out is not None:
            # A drill's file has the trainees' acts too (its debrief); a live or plain
            # replay's stays the rules' transitions alone.
            alerts_file = AlertsFileSink(options.alerts_out, append=replay is None, acts=drill)
            sinks.append(alerts_file)
            if drill:
                act_records.append(alerts_file.on_act)
        if config.mqtt.url is not None:
            from api.mqtt import MqttConfigError, MqttFeed, client_id_warning, run_client_id
            from api.outbox import StoreOutbox

            # Never the live service's client id: the broker would drop one of the two.
            configured = config.mqtt.client_id
            client_id = run_client_id(configured, scope)
            if client_id == configured:
                problem = client_id_warning(configured)
                if problem is not None:
                    log.warning("%s: %s", config.where("mqtt.client_id"), problem)
            elif configured is None:
                log.log(logging.INFO if live_service else logging.WARNING,
                        "MQTT client id %s (generated: mqtt.client_id is not set)", client_id)
            else:
                log.warning("MQTT client id %s (the live service's is %s)", client_id,
                            configured)
            # A plain replay has a branch of its own, as a drill has: with the port's
            # config it took the live prefix, and its "stopped" and alerts (retained, and
            # cleared by no one) were the platform's live state. A prefix given on the
            # command line is used as given (a test broker, a platform's staging topics).
            replay_branch = replay is not None and not drill and options.mqtt_prefix is None
            try:
                feed = MqttFeed.from_config(
                    config.mqtt, port_name=config.port.name, drill=drill,
                    replay=replay_branch, outbox=StoreOutbox(store, scope),
                    client_id=client_id, vessel_live_s=config.rules.picture.live_s,
                    clock=lambda: engine.newest,
                    # A replay given a prefix (the live one, perhaps) must not clear its
                    # topics as left behind.
                    reconcile=live_service or drill or replay_branch)
            except MqttConfigError as exc:  # a TLS file: the line it was written on too
                raise exc.placed(config.origin) from None
            if replay is not None and not drill:
                log.warning("MQTT: a replay publishes under %s%s", feed.topics.root,
                            " (its own branch, not the live service's topics; "
                            "--mqtt-prefix names another prefix)" if replay_branch
                            else " as --mqtt-prefix says (never give it the live "
                            "service's prefix)")
            feed.remember_open(a for a in restored if not snoozes.is_muted(a["id"]))
            if sources:
                from harbourwatch.source_status import SourceStatus

                def sentences(name: str) -> int:
                    state = ingestor.sources.get(name)
                    return 0 if state is None else state.health.sentences

                # Heard, not merely bound: a UDP socket stays up when its receiver goes
                # quiet. Every source's state is told at once (offline until it is up), so
                # one that never comes up is not left "online" from a previous run.
                heard = SourceStatus(sources, config.rules.source_silent.silent_s_for,
                                     sentences, feed.source_status)
                tasks.append(asyncio.create_task(heard.run(), name="source-status"))
            sinks.append(feed)
            mqtt_feed = feed
        if config.api.enabled:
            from api.picture import LivePicture
            from api.stream import StreamHub

            hub = StreamHub(max_clients=config.api.max_stream_clients)
            picture = LivePicture(config.rules.picture.live_s, clock=lambda: engine.newest,
                                  max_vessels=config.rules.picture.max_vessels)
            sinks += [picture, hub]
            listeners: list[Callable[[Mapping[str, Any]], None]] = [
                pipeline.operator_acts.record]
            if mqtt_feed is not None:
                listeners.append(_operator_acts_to(mqtt_feed, _rules_clock(engine), snoozes))
            assert auth is not None
            api_task = asyncio.create_task(_serve_api(
                config, auth, store, engine, pipeline, zones, stop, hub, picture,
                listeners, failures, transport_of(sources, queue),
                None if mqtt_feed is None else mqtt_feed.status,
                saves_zones=live_service, act_records=act_records))
        if mqtt_feed is not None:
            mqtt_feed.set_stats_provider(_mqtt_stats(
                pipeline, store, mqtt_feed, *((hub, picture) if config.api.enabled
                                              else (None, None))))
        for sink in sinks[1:]:
            await sink.start()
            started.append(sink)
        if saves_state:
            tasks.append(asyncio.create_task(_periodically(
                STATE_SAVE_S, "save the rules' state",
                lambda: _save_all(store, engine, pipeline, scope, exercise))))
        if live_service and config.store.retention_days is not None:
            keep_s = config.store.retention_days * 86400.0
            tasks.append(asyncio.create_task(_periodically(
                PRUNE_S, "drop old positions", lambda: _prune(store, keep_s), at_once=True)))
        if replay is not None:
            finished = await _until_stopped(_replay(replay, pipeline, decoder, stop), stop,
                                            grace_s=STOP_GRACE_S)
            if finished and config.api.enabled and not stop.is_set():
                await store.flush()  # the last positions too, held for late receivers
                log.warning("replay finished; still serving the API (Ctrl-C to stop)")
                await stop.wait()
        else:
            await _live(sources, pipeline, queue, stop)
    finally:
        stop.set()
        if decoder is not None:
            decoder.close()
        if saves_state:
            try:
                await save_state(store, engine, scope, muted=snoozes.muted_ids,
                                 exercise=exercise)
            except Exception:
                log.exception("could not save the rules' state")
        if api_task is not None:
            # Let uvicorn shut down on its own (it saw ``stop``); cancel only if it hangs.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(api_task, timeout=8)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sink in reversed(started):
            try:
                await sink.stop()
            except Exception as exc:
                log.exception("could not stop %r cleanly", sink)
                # The store's rows lost, say: a clean exit status would hide it.
                failures.append(f"could not stop {type(sink).__name__} cleanly: {exc}")
        if pipeline.sink_failures:  # e.g. an alerts file on a full disk: it is incomplete
            failures.append(f"outputs failed (calls that raised): {pipeline.sink_failures}")
        if pipeline.rule_failures:  # a drill's alerts are then incomplete too
            failures.append(f"the rules raised {pipeline.rule_failures} times (logged): "
                            "the failing rule did not judge those reports, ticks, receivers "
                            "or zone changes, or started afresh; the other rules did")
        for message in failures:
            log.error("%s", message)
    if replay is None and signalled:  # a replay says where it stopped
        log.warning("stopped (%s)", signalled[0])
    return 1 if failures else 0


async def _start_store(store: Store, stop: asyncio.Event, *, wait: bool) -> bool:
    """Start ``store``; False when a signal came first. ``wait``: the port's live service
    waits for a database that is not up (a box back from a power cut starts before its
    database; exiting, it met systemd's start limit and stayed down), trying again with
    back-off. A replay or drill, run by hand, says so at once."""
    delay = 1.0
    while True:
        try:
            return await _until_stopped(store.start(), stop)
        except StoreUnavailable as exc:
            if not wait:
                raise
            log.warning("store: %s; the database is not up: trying again in %.0f s (a "
                        "signal stops)", exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return False
        delay = min(delay * 2, START_RETRY_MAX_S)


def _on_signals(stop: asyncio.Event, signalled: list[str]) -> None:
    """SIGINT/SIGTERM/SIGHUP end the run cleanly: sinks flush, MQTT says ``stopped``. The
    first is logged and its name put in ``signalled`` (a journal tells a clean stop from a
    hang that was killed).

    SIGHUP too: a closed terminal or SSH session killed the service by default, losing the
    buffered positions and the rules' state.
    """
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not signalled:
            signalled.append(sig.name)
            log.warning("%s: stopping", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue  # started under nohup: the operator asked for it to go on
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)


async def _until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event, *,
                         grace_s: float = 0.0) -> bool:
    """Run ``work`` until it ends (True) or ``stop`` is set first (False, work cancelled).
    ``grace_s``: the work sees ``stop`` too and may end by itself that long after it (a
    replay ends between two message times: True)."""
    task = asyncio.create_task(work)
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and grace_s > 0:
            await asyncio.wait({task}, timeout=grace_s)
    finally:
        waiter.cancel()
    if task.done():
        task.result()  # re-raise a failure of the work itself
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


def _operator_acts_to(sink: Sink, clock: Callable[[], float],
                      snoozes: SnoozeBook) -> Callable[[Mapping[str, Any]], None]:
    """Acks and resolves reach the command platform as ``update`` transitions, unless the
    alert was muted (its ``update`` left a retained alert the platform never saw open, and
    its muted end never cleared). Stamped on the rules' ``clock``, as their transitions
    are: the newest report's time stands still while the receivers are silent, and an ack
    of the alert that says so was stamped before the alert itself."""

    def forward(alert: Mapping[str, Any]) -> None:
        event = AlertEvent(Transition.UPDATE, dict(alert), clock())
        if not snoozes.muted(event):
            sink.on_alert(event)

    return forward


def _mqtt_stats(pipeline: Pipeline, store: Store, feed: MqttFeed, hub: StreamHub | None,
                picture: LivePicture | None) -> Callable[[], dict[str, Any]]:
    """``<p>/stats``: the counters of ``GET /stats``, in its shape, then the sources'."""
    from api.service_stats import service_stats

    def provide() -> dict[str, Any]:
        counters = pipeline.stats()
        vessels = None if picture is None else sum(1 for _ in picture.vessels())
        return {**service_stats(counters, store, hub=hub, vessels=vessels,
                                mqtt=feed.status()),
                "sources": counters["sources"]}

    return provide


def _rules_clock(engine: Engine) -> Callable[[], float]:
    """The rules' clock (message time, moved on by the wall clock in a live run while no
    report comes); the wall clock before the rules have any time."""
    return lambda: engine.newest if math.isfinite(engine.newest) else time.time()


def _start_decoding(plan: ReplayPlan | None, ingestor: Ingestor) -> DecodingProcess | None:
    """A ``--speed max`` replay decodes in a second process when it can."""
    if plan is None or plan.speed is not None:
        return None
    from replay.decoding import DecodingProcess

    return DecodingProcess.start(plan.logs, ingestor)


async def _replay(plan: ReplayPlan, pipeline: Pipeline,
                  decoder: DecodingProcess | None, stop: asyncio.Event) -> None:
    from replay.player import play
    from replay.progress import Progress

    progress = Progress(plan.logs, enabled=plan.progress)
    try:
        result = await play(plan.logs, pipeline, speed=plan.speed, start=plan.start,
                            progress=progress, decoder=decoder, stop=stop)
    finally:
        progress.close()
        if decoder is not None:
            decoder.close()  # done (or cut short): not left to linger while the API serves
    log.warning("replayed %d lines, %d reports, %d alert transitions", result.lines,
                result.reports, pipeline.alert_events)
    if result.resume_at is not None:
        # Every report before that time was judged, none after: --start resumes exactly.
        at = iso_time(result.resume_at)
        log.warning("stopped at %s; resume with --start %s", at, at)
    elif plan.start is not None and not result.reports:
        log.warning("--start %s is past the end of the log(s): %s", iso_time(plan.start),
                    "they hold no message time" if result.newest_read is None else
                    f"the last message time in them is {iso_time(result.newest_read)}")


async def _resumes_exercise(store: Store, engine: Engine, exercise: Mapping[str, Any] | None,
                            plan: ReplayPlan | None) -> bool:
    """Whether a drill resumes the exercise saved in ``store`` (see harbourwatch.exercise).
    A new one replaces the saved state (a drill killed before its first save resumed the
    last exercise's) and drops the last one's unsent MQTT alerts."""
    start = None if plan is None else plan.start
    if exercise is not None:
        why = why_new(await store.load_engine_state("drill"), exercise, start)
        if why is None:
            log.warning("drill: resuming the exercise saved in this database at --start %s",
                        iso_time(start or 0.0))
            return True
        if start is not None:
            log.warning("drill: --start %s begins a new exercise there from a clean slate: "
                        "%s", iso_time(start), why)
        await save_state(store, engine, "drill", exercise=exercise)
    dropped = await store.outbox_discard("drill")
    if dropped:
        log.warning("drill: a new exercise: discarded %d MQTT alert message%s an earlier "
                    "exercise left unsent", dropped, "" if dropped == 1 else "s")
    earlier = await store.begin_exercise()
    if earlier:
        log.warning("drill: a new exercise: %d alert%s of an earlier exercise listed under "
                    "drill=true no more until raised again (drill=any lists them; their "
                    "audit trails are kept)", earlier, "" if earlier == 1 else "s")
    return False


def transport_of(sources: list[Any], queue: LineQueue
                 ) -> Callable[[], dict[str, dict[str, Any]]]:
    """Each live source's counters of what never reached ingest, for /sources and /metrics:
    lines the full queue dropped, datagrams the kernel dropped, links lost."""

    started_at = time.time()

    def provide() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for source in sources:
            stats = source.stats
            counters: dict[str, Any] = {
                "queue_dropped": queue.drops.get(source.name, 0),
                "overlong": stats.overlong, "partial_lines": stats.partial_lines,
                "connects": stats.connects, "disconnects": stats.disconnects,
                "connected": source.connected,
                # Wall times, for a watchdog: message time can lag a live feed's arrival.
                "last_line_at": None if stats.last_line_at is None
                else iso_time(stats.last_line_at),
                "watched_since": iso_time(started_at)}
            if getattr(source, "allow_from", None) is not None:
                counters["refused_datagrams"] = stats.refused_datagrams
            kernel = getattr(source, "kernel_drops", None)
            if kernel is not None:
                counters["kernel_dropped"] = kernel()
            out[source.name] = counters
        return out

    return provide


async def _live(sources: list[Any], pipeline: Pipeline, queue: LineQueue,
                stop: asyncio.Event) -> None:
    if not sources:
        log.warning("no live sources configured (--udp, --tcp, --serial or sources:); "
                    "waiting for a signal")
        await stop.wait()
        return
    reading = asyncio.create_task(run_sources(sources, queue))
    consuming = asyncio.create_task(pipeline.consume(queue))
    waiting = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({reading, consuming, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reading, consuming, waiting):
            task.cancel()
        for task in (reading, consuming, waiting):
            try:
                await task
            except asyncio.CancelledError:
                pass
            except ExceptionGroup as group:
                # A source that cannot start (a port in use, a host that does not resolve)
                # comes out of the sources' task group: say which, not a traceback.
                failed, _rest = group.split(SourceError)
                if failed is None:
                    raise
                raise failed.exceptions[0] from None


def api_deps(store: Store, auth: Authenticator, engine: Engine, pipeline: Pipeline,
             zones: ZoneSet, hub: StreamHub, picture: LivePicture,
             operator_updates: list[Callable[[Mapping[str, Any]], None]], *,
             transport: Callable[[], dict[str, dict[str, Any]]] | None = None,
             mqtt_status: Callable[[], Mapping[str, Any]] | None = None,
             saves_zones: bool = True,
             zones_file_sha256: Callable[[], str | None] | None = None,
             act_records: list[Callable[[Mapping[str, Any]], None]] | None = None) -> ApiDeps:
    """What the API of a run with rules is built from: the store, and the running rules for
    zones, snoozes and the alerts they hold (served while the database is away).
    ``zones_file_sha256``: the zones file's content now, saved with each zone version."""
    from api.deps import ApiDeps, sources_of
    from harbourwatch.alert_memory import EngineAlerts

    memory = EngineAlerts(engine.open_alerts, engine.book.get, pipeline.operator_acts,
                          drill=engine.drill)
    return ApiDeps(store=store, auth=auth, picture=picture, hub=hub, zones=zones,
                   zone_target=pipeline,
                   snooze_target=pipeline.snoozes, alert_memory=memory, stats=pipeline.stats,
                   sources=sources_of(pipeline.ingestor, transport),
                   clock=_rules_clock(engine),
                   operator_updates=operator_updates, drill=engine.drill, mqtt=mqtt_status,
                   saves_zones=saves_zones, zones_file_sha256=zones_file_sha256,
                   act_records=list(act_records or ()))


async def _serve_api(config: Config, auth: Authenticator, store: Store, engine: Engine,
                     pipeline: Pipeline, zones: ZoneSet, stop: asyncio.Event,
                     hub: StreamHub, picture: LivePicture,
                     operator_updates: list[Callable[[Mapping[str, Any]], None]],
                     failures: list[str],
                     transport: Callable[[], dict[str, dict[str, Any]]],
                     mqtt_status: Callable[[], Mapping[str, Any]] | None, *,
                     saves_zones: bool,
                     act_records: list[Callable[[Mapping[str, Any]], None]]) -> None:
    from api.app import create_app
    from api.server import serve
    path = config.port.zones
    deps = api_deps(store, auth, engine, pipeline, zones, hub, picture, operator_updates,
                    transport=transport, mqtt_status=mqtt_status, saves_zones=saves_zones,
                    zones_file_sha256=None if path is None else lambda: file_sha256(path),
                    act_records=act_records)
    app = create_app(deps)
    log.warning("API on http://%s:%d (OpenAPI at /docs)", config.api.host, config.api.port)
    if not len(auth) and not auth.open_read:
        log.warning("API: no tokens (api.tokens, HARBOURWATCH_API_TOKENS) and api.open_read "
                    "is false: every request but /health and /docs answers 401")
    try:
        await serve(app, config.api.host, config.api.port, hub=hub, stop=stop)
    except OSError as exc:
        # The address is taken (api.server turns uvicorn's exit into OSError): a failure of
        # this run, not of the event loop.
        failures.append(f"API on {config.api.host}:{config.api.port} could not start "
                        f"({exc!r}); stopping")
        stop.set()
    except Exception as exc:  # the run must not go on without its API, and end with 0
        log.exception("the API failed")
        failures.append(f"the API failed ({exc!r}); stopping")
        stop.set()
