"""A drill replay served on the API and fed to a real Mosquitto, end to end: the command
platform sees the replay's alerts under the drill branch, an operator's ack over HTTP reaches
it as an update, and a clean stop leaves ``stopped``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from harbourwatch.timeutil import parse_iso
from replay.scenario import generate_scenario
from store import open_store
from tests.paths import FIXTURES
from tests.services.mosquitto import MosquittoBroker, free_port

DEMO_ZONES = FIXTURES / "demo-port" / "zones.geojson"
TOKEN = "op-" + uuid.uuid4().hex


async def _collect(broker: MosquittoBroker, topic: str, into: list[aiomqtt.Message],
                   ready: asyncio.Event) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic, qos=1)
        ready.set()
        async for message in client.messages:
            into.append(message)


def _stderr_lines(proc: subprocess.Popen[str]) -> list[str]:
    """The child's stderr, read as it comes (a thread): lines to wait on, and a pipe that
    never fills up and blocks the child."""
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _free_udp_port() -> int:
    """A UDP port nobody listens on (``free_port`` is TCP's: its UDP twin may be taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _cancelled(listener: asyncio.Task[None]) -> None:
    """Stop a ``_collect`` task (it ends only by being cancelled)."""
    listener.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listener


async def _stopped(proc: subprocess.Popen[str], listener: asyncio.Task[None]) -> int:
    """Stop the service as systemd does, then the listener; the service's exit status."""
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    await _cancelled(listener)
    return code


async def test_drill_replay_reaches_api_and_command_platform(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    log, truth = tmp_path / "port.nmea", tmp_path / "truth.json"
    generate_scenario(DEMO_ZONES, seed=5, hours=0.5, out=log, truth=truth)
    prefix = f"test-{uuid.uuid4().hex[:8]}/port"
    api_port = free_port()
    messages: list[aiomqtt.Message] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(_collect(mosquitto, f"{prefix}/#", messages, ready))
    await asyncio.wait_for(ready.wait(), 10)
    # The live service's alert waiting for its broker, in the database the drill shares:
    # the drill once drained it to its own broker.
    live_store = open_store(f"sqlite:///{tmp_path / 'hw.db'}")
    await live_store.start()
    waiting = await live_store.outbox_add(f"{prefix}/alerts", b'{"live": true}', qos=1)
    await live_store.stop()
    env = {**os.environ, "HARBOURWATCH_API_TOKENS": f"duty:operator:{TOKEN}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "replay", str(log), "--zones", str(DEMO_ZONES),
         "--speed", "max", "--drill", "--no-progress", "--serve", f"127.0.0.1:{api_port}",
         "--mqtt", f"mqtt://{mosquitto.host}:{mosquitto.port}", "--mqtt-prefix", prefix,
         "--db", f"sqlite:///{tmp_path / 'hw.db'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = _stderr_lines(proc)
    try:
        def alerts() -> list[dict[str, Any]]:
            return [json.loads(m.payload) for m in messages
                    if str(m.topic) == f"{prefix}/drill/alerts"]

        await _wait_for(lambda: len(alerts()) >= 5, 90, "drill alerts on MQTT")
        # Nothing of a drill goes to the real branch.
        assert not [m for m in messages if str(m.topic) == f"{prefix}/alerts"]
        assert all(a["drill"] is True and a["alert"]["drill"] is True for a in alerts())
        assert all(m.qos == 1 for m in messages if str(m.topic) == f"{prefix}/drill/alerts")

        base = f"http://127.0.0.1:{api_port}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        # The replay over (it goes on while MQTT already has alerts): an alert it still
        # ends between the list and the ack is acked "ended", not "acknowledged".
        await _wait_for(lambda: proc.poll() is not None
                        or any("replay finished" in line for line in stderr), 90,
                        "the end of the replay")
        assert proc.poll() is None, "".join(stderr)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            opened: list[dict[str, Any]] = []

            async def some_open() -> bool:
                try:
                    response = await http.get("/alerts", headers=auth,
                                              params={"state": "open", "drill": "true"})
                except httpx.TransportError:  # the API not listening yet
                    return False
                opened[:] = response.json()["alerts"] if response.status_code == 200 else []
                return bool(opened)

            deadline = time.monotonic() + 60
            while not await some_open():
                assert time.monotonic() < deadline, "no open drill alert on the API"
                await asyncio.sleep(0.3)
            assert (await http.get("/alerts")).status_code == 401
            target = opened[0]
            acked = await http.post(f"/alerts/{target['id']}/ack", headers=auth,
                                    json={"note": "drill: patrol boat sent"})
            assert acked.status_code == 200, acked.text
            assert acked.json()["state"] == "acknowledged"
            assert acked.json()["audit"][-1]["actor"] == "duty"

        await _wait_for(lambda: any(a["type"] == "update" and a["alert"]["id"] == target["id"]
                                    and a["alert"]["state"] == "acknowledged"
                                    for a in alerts()), 30, "the ack on MQTT")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, "".join(stderr)
    await _wait_for(lambda: any(str(m.topic) == f"{prefix}/drill/available"
                                and m.payload == b"stopped" for m in messages), 10, "stopped")
    await _cancelled(listener)
    assert not [m for m in messages if str(m.topic) == f"{prefix}/alerts"]
    live_store = open_store(f"sqlite:///{tmp_path / 'hw.db'}")
    await live_store.start()
    assert [m.id for m in await live_store.outbox_pending(10)] == [waiting]  # still the live's
    await live_store.stop()


async def test_a_source_that_never_comes_up_is_offline_on_mqtt(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """A feed down from the start published nothing: its retained "online" from the run
    before stayed in place. Now every source's state is published when the feed starts."""
    prefix = f"test-{uuid.uuid4().hex[:8]}/port"
    closed, udp = free_port(), _free_udp_port()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:  # the run before
        await client.publish(f"{prefix}/sources/tcp-127-0-0-1-{closed}/status", b"online",
                             qos=1, retain=True)
    messages: list[aiomqtt.Message] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(_collect(mosquitto, f"{prefix}/sources/#", messages, ready))
    await asyncio.wait_for(ready.wait(), 10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--zones", str(DEMO_ZONES),
         "--tcp", f"127.0.0.1:{closed}", "--udp", f"127.0.0.1:{udp}",
         "--mqtt", f"mqtt://{mosquitto.host}:{mosquitto.port}", "--mqtt-prefix", prefix,
         "--db", f"sqlite:///{tmp_path / 'hw.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def latest(name: str) -> bytes | None:
            topic = f"{prefix}/sources/{name}/status"
            found = [m.payload for m in messages
                     if str(m.topic) == topic and isinstance(m.payload, bytes)]
            return found[-1] if found else None

        await _wait_for(lambda: latest(f"tcp-127-0-0-1-{closed}") == b"offline", 30,
                        "the dead feed's offline")
        await _wait_for(lambda: latest(f"udp-{udp}") == b"online", 30, "the UDP source")
    finally:
        code = await _stopped(proc, listener)
    assert code == 0, proc.stderr.read() if proc.stderr else ""


async def test_a_drill_with_the_ports_config_leaves_the_live_client_id_alone(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """A drill (or replay) on a config that sets ``mqtt.client_id`` connected with that id:
    the broker dropped the live service's connection for it, and each took it back."""
    log, truth = tmp_path / "port.nmea", tmp_path / "truth.json"
    generate_scenario(DEMO_ZONES, seed=5, hours=0.25, out=log, truth=truth)
    client_id = f"hw-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "port.yaml"
    config.write_text(
        f"version: 1\nport: {{name: testport, zones: {DEMO_ZONES}}}\n"
        f"mqtt: {{url: 'mqtt://{mosquitto.host}:{mosquitto.port}', client_id: {client_id},"
        f" prefix: 'test-{uuid.uuid4().hex[:8]}/port'}}\n")
    # The live service's connection, with the configured id.
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=client_id) as live:
        for flags in (("--drill",), ()):
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "harbourwatch.cli", "replay", str(log), "--config",
                 str(config), "--speed", "max", "--no-progress", "--serve", "off",
                 "--db", f"sqlite:///{tmp_path / 'hw.db'}", *flags],
                capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            # Still connected: taken over, the publish fails (the client was disconnected).
            await asyncio.wait_for(live.publish("test/still-here", b"1", qos=1), 5)
            run = "drill" if flags else "replay"
            made = re.search(r"MQTT client id (\S+) \(the live service's is", done.stderr)
            assert made is not None, done.stderr
            assert re.fullmatch(f"{client_id.replace('-', '')}{run[0]}[0-9a-f]{{8}}",
                                made[1])
            assert "keeps dropping" not in done.stderr


async def test_a_plain_replay_with_the_ports_config_leaves_the_live_topics_alone(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """``replay LOG --config port.yaml`` (no --drill, --mqtt-prefix or --mqtt off) published
    on the live prefix: ``<p>/available`` went online then stopped under the running live
    service, and its alerts stayed retained there. It has a branch of its own now."""
    log, truth = tmp_path / "port.nmea", tmp_path / "truth.json"
    generate_scenario(DEMO_ZONES, seed=5, hours=0.25, out=log, truth=truth)
    prefix = f"test-{uuid.uuid4().hex[:8]}/port"
    config = tmp_path / "port.yaml"
    config.write_text(
        f"version: 1\nport: {{name: testport, zones: {DEMO_ZONES}}}\n"
        f"mqtt: {{url: 'mqtt://{mosquitto.host}:{mosquitto.port}', prefix: '{prefix}'}}\n")
    live_alert = f"{prefix}/alerts/dark_vessel/live-1"
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as live:  # the live service's
        await live.publish(f"{prefix}/available", b"online", qos=1, retain=True)
        await live.publish(live_alert, b'{"id": "live-1"}', qos=1, retain=True)
    messages: list[aiomqtt.Message] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(_collect(mosquitto, f"{prefix}/#", messages, ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "harbourwatch.cli", "replay", str(log), "--config",
             str(config), "--speed", "max", "--no-progress", "--serve", "off",
             "--db", f"sqlite:///{tmp_path / 'hw.db'}"],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        # Its last message (wherever it went): all it published before has reached us.
        await _wait_for(lambda: any(str(m.topic).endswith("/available")
                                    and m.payload == b"stopped" for m in messages), 30,
                        "the replay's stopped")
    finally:
        await _cancelled(listener)
    # Only what the live service had retained, seen as the listener subscribed.
    live_topics = [(str(m.topic), m.payload, m.retain) for m in messages
                   if not str(m.topic).startswith(f"{prefix}/replay/")]
    assert sorted(live_topics) == sorted([(f"{prefix}/available", b"online", True),
                                          (live_alert, b'{"id": "live-1"}', True)])
    replayed = [json.loads(m.payload) for m in messages
                if str(m.topic) == f"{prefix}/replay/alerts"]
    assert replayed and all(a["drill"] is False for a in replayed)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as late:
        await late.subscribe(f"{prefix}/available", qos=1)
        await late.subscribe(f"{prefix}/alerts/+/+", qos=1)
        await late.subscribe(f"{prefix}/replay/available", qos=1)
        retained: dict[str, bytes] = {}
        marker = f"{prefix}-marker/{uuid.uuid4().hex}"
        await late.subscribe(marker, qos=1)
        await late.publish(marker, b"m", qos=1)
        async for message in late.messages:
            if str(message.topic) == marker:
                break
            assert isinstance(message.payload, bytes)
            retained[str(message.topic)] = message.payload
    assert retained == {f"{prefix}/available": b"online", live_alert: b'{"id": "live-1"}',
                        f"{prefix}/replay/available": b"stopped"}
    assert f"MQTT: a replay publishes under {prefix}/replay (its own branch" in done.stderr


async def test_a_bound_udp_source_whose_receiver_went_quiet_is_offline_on_mqtt(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """``<p>/sources/<source>/status`` said "online" for a bound UDP socket whose receiver
    had gone silent, its source_silent alert open: the status told the link, not whether
    the receiver is heard, which is what a command platform reads it as."""
    prefix = f"test-{uuid.uuid4().hex[:8]}/port"
    udp = _free_udp_port()
    source = f"udp-{udp}"
    config = tmp_path / "port.yaml"
    config.write_text(
        f"version: 1\nport: {{name: testport, zones: {DEMO_ZONES}}}\n"
        "rules: {source_silent: {silent_s: 3}}\n"
        f"mqtt: {{url: 'mqtt://{mosquitto.host}:{mosquitto.port}', prefix: '{prefix}'}}\n")
    messages: list[aiomqtt.Message] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(_collect(mosquitto, f"{prefix}/#", messages, ready))
    await asyncio.wait_for(ready.wait(), 10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--config", str(config),
         "--udp", f"127.0.0.1:{udp}", "--serve", "off",
         "--db", f"sqlite:///{tmp_path / 'hw.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sentence = b"!AIVDM,1,1,,A,33nr7t001f13KNTOahh2@QpF00vh,0*58\r\n"

    def status() -> bytes | None:
        found = [m.payload for m in messages
                 if str(m.topic) == f"{prefix}/sources/{source}/status"]
        return found[-1] if found and isinstance(found[-1], bytes) else None

    def silent_alerts(kind: str) -> list[dict[str, Any]]:
        return [body["alert"] for body in (json.loads(m.payload) for m in messages
                                           if str(m.topic) == f"{prefix}/alerts")
                if body["type"] == kind and body["alert"]["rule"] == "source_silent"
                and body["alert"]["details"]["receiver"] == source]

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await _wait_for(lambda: status() == b"online", 30, "the bound source")
            sock.sendto(sentence, ("127.0.0.1", udp))
            await _wait_for(lambda: bool(silent_alerts("new")), 30, "source_silent")
            await _wait_for(lambda: status() == b"offline", 10, "the silent source offline")
            sock.sendto(sentence, ("127.0.0.1", udp))  # heard again
            await _wait_for(lambda: status() == b"online", 10, "the source heard again")
            await _wait_for(lambda: bool(silent_alerts("end")), 10, "source_silent's end")
    finally:
        code = await _stopped(proc, listener)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    statuses = [m.payload for m in messages
                if str(m.topic) == f"{prefix}/sources/{source}/status"]
    assert statuses[-3:] == [b"online", b"offline", b"online"]


@dataclass
class _ServedRun:
    """``harbourwatch run`` on a UDP port with the API served and MQTT on a test prefix,
    and a listener on that prefix (``_served_run``)."""

    prefix: str
    udp: int
    api_port: int
    messages: list[aiomqtt.Message]
    listener: asyncio.Task[None]
    proc: subprocess.Popen[str]
    stderr: list[str]


async def _served_run(tmp_path: Path, broker: MosquittoBroker, role: str, *, rules: str = "",
                      mqtt_extra: str = "") -> _ServedRun:
    """Start the listener, then the service with the demo zones, SQLite and one token of
    ``role`` (``TOKEN``); ``rules`` and ``mqtt_extra`` add to its config."""
    prefix = f"test-{uuid.uuid4().hex[:8]}/port"
    udp, api_port = _free_udp_port(), free_port()
    config = tmp_path / "port.yaml"
    config.write_text(
        f"version: 1\nport: {{name: testport, zones: {DEMO_ZONES}}}\n{rules}"
        f"mqtt: {{url: 'mqtt://{broker.host}:{broker.port}', prefix: '{prefix}'{mqtt_extra}}}\n")
    messages: list[aiomqtt.Message] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(_collect(broker, f"{prefix}/#", messages, ready))
    await asyncio.wait_for(ready.wait(), 10)
    env = {**os.environ, "HARBOURWATCH_API_TOKENS": f"duty:{role}:{TOKEN}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harbourwatch.cli", "run", "--config", str(config),
         "--udp", f"127.0.0.1:{udp}", "--serve", f"127.0.0.1:{api_port}",
         "--db", f"sqlite:///{tmp_path / 'hw.db'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return _ServedRun(prefix, udp, api_port, messages, listener, proc, _stderr_lines(proc))


async def test_an_act_on_mqtt_is_stamped_on_the_rules_clock_not_before_the_alert(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """An operator's ack reached MQTT stamped with the newest time a report carried: in a
    live run whose receivers are silent the rules' clock moves on without reports, so the
    ack of a ``source_silent`` alert was stamped before the alert's own ``new`` (and its
    ``started_at``), and its retained payload's ``time`` went back, which the README says it
    never does. A platform keeping the newest payload of each alert dropped the ack."""
    run = await _served_run(tmp_path, mosquitto, "operator",
                            rules="rules: {source_silent: {silent_s: 2}}\n")
    prefix, udp, api_port, messages = run.prefix, run.udp, run.api_port, run.messages
    proc, listener, stderr = run.proc, run.listener, run.stderr
    source = f"udp-{udp}"

    def silent_alert(kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [(body["time"], body["alert"]) for body in (
            json.loads(m.payload) for m in messages if str(m.topic) == f"{prefix}/alerts")
            if body["type"] == kind and body["alert"]["rule"] == "source_silent"
            and body["alert"]["details"]["receiver"] == source]

    try:
        await _wait_for(lambda: any(str(m.topic) == f"{prefix}/sources/{source}/status"
                                    for m in messages), 30, "the bound source")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"!AIVDM,1,1,,A,33nr7t001f13KNTOahh2@QpF00vh,0*58\r\n",
                        ("127.0.0.1", udp))
        await _wait_for(lambda: bool(silent_alert("new")), 30, "source_silent")
        (opened_at, opened), = silent_alert("new")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}",
                                     timeout=10) as http:
            acked = await http.post(f"/alerts/{opened['id']}/ack", json={"note": "on it"},
                                    headers={"Authorization": f"Bearer {TOKEN}"})
            assert acked.status_code == 200, acked.text
        await _wait_for(lambda: bool(silent_alert("update")), 30, "the ack on MQTT")
    finally:
        code = await _stopped(proc, listener)
    assert code == 0, "".join(stderr)
    (acked_at, update), = silent_alert("update")
    assert update["state"] == "acknowledged"
    retained = [json.loads(m.payload)["time"] for m in messages
                if str(m.topic) == f"{prefix}/alerts/source_silent/{opened['id']}"
                and m.payload]
    assert retained == [opened_at, acked_at]
    assert parse_iso(opened["started_at"]) <= parse_iso(opened_at) <= parse_iso(acked_at)


async def test_the_stats_on_mqtt_are_those_of_the_api(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """``<p>/stats`` carries the counters of ``GET /stats`` in its shape (``pipeline``,
    ``store``, ``stream``, ``vessels``, ``mqtt``), plus ``sources``, as the README says: the
    pipeline's were at the top level and the store's (``db_up``, ``queued``) were missing,
    so a platform parsing one could not read the other, nor see the database away."""
    run = await _served_run(tmp_path, mosquitto, "viewer", mqtt_extra=", stats_interval_s: 0.5")
    prefix, udp, api_port, messages = run.prefix, run.udp, run.api_port, run.messages
    proc, listener, stderr = run.proc, run.listener, run.stderr
    try:
        await _wait_for(lambda: any(str(m.topic) == f"{prefix}/sources/udp-{udp}/status"
                                    and m.payload == b"online" for m in messages),
                        30, "the bound source")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"!AIVDM,1,1,,A,33nr7t001f13KNTOahh2@QpF00vh,0*58\r\n",
                        ("127.0.0.1", udp))
        await _wait_for(lambda: any(str(m.topic) == f"{prefix}/stats"
                                    and b'"reports":1' in bytes(m.payload) for m in messages),
                        30, "stats after the report")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}",
                                     timeout=10) as http:
            response = await http.get("/stats", headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 200, response.text
    finally:
        code = await _stopped(proc, listener)
    assert code == 0, "".join(stderr)
    api = response.json()
    stats = json.loads(bytes([m for m in messages if str(m.topic) == f"{prefix}/stats"][-1]
                             .payload))
    assert list(stats) == [*api, "sources", "time", "wall_time", "drill"]
    for part in ("pipeline", "store", "stream", "mqtt"):
        assert set(stats[part]) == set(api[part]), part
    assert stats["pipeline"]["reports"] == api["pipeline"]["reports"] == 1
    assert stats["store"]["db_up"] is True
    assert stats["sources"][f"udp-{udp}"]["messages"] == 1
