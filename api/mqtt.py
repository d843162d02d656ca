"""The MQTT feed for the port's command platform: a :class:`~harbourwatch.sinks.Sink`.

Every aiomqtt call of the project lives in this module. aiomqtt (and paho) errors are
translated here into our own tree, so callers never import aiomqtt::

    MqttError                 anything the feed reports
    ├── MqttConfigError       bad URL, prefix, credentials or TLS files (also a ValueError)
    └── MqttConnectError      the broker could not be reached or dropped the connection
        └── MqttRefusedError  the broker answered CONNECT with a refusal (CONNACK 1-5)
            └── MqttAuthError the broker refused the credentials (CONNACK 4 or 5)

Delivery (see DESIGN "MQTT feed"):

- ``on_report``/``on_alert`` only update memory and wake the writer; they never block.
- Alert messages go through an :class:`~api.outbox.Outbox`: added first, published in id
  order with QoS 1, marked done after the broker's PUBACK; pending ones are resent in order
  after a reconnect or a restart (with a persistent outbox). At least once, in order.
- Vessel state is coalesced per MMSI, rate-limited on message time and dropped when it is
  older than ``position_max_age_s`` by the rules' clock at publish time (live, it moves on
  with the wall time while no report comes).
- A supervisor opens a new client per attempt with capped, jittered exponential back-off;
  every connect publishes ``online`` and republishes all retained state.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import math
import os
import random
import re
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Self
from urllib.parse import urlsplit

import aiomqtt
from aiomqtt.exceptions import MqttConnectError as _Refused

from api.mqtt_topics import Topics, default_prefix
from api.outbox import MemoryOutbox, Outbox, OutboxEntry
from api.picture import PRUNE_EVERY_S, blank_vessel
from geofence.alert import AlertEvent, Transition
from harbourwatch.operator_acts import as_pushed
from harbourwatch.timeutil import parse_iso
from ingest.report import STATIC_FIELDS, Report, iso_time, statics_to_apply

if TYPE_CHECKING:
    from harbourwatch.config import MqttConfig

log = logging.getLogger(__name__)
#: How many undelivered alert messages a stop counts before it says "N+".
UNDELIVERED_COUNTED = 10_000

PASSWORD_ENV = "HARBOURWATCH_MQTT_PASSWORD"

#: AIS message types that describe a vessel (not base stations or aids to navigation).
VESSEL_MSG_TYPES = frozenset({1, 2, 3, 5, 9, 18, 19, 24, 27})
POSITION_FIELDS = ("lat", "lon", "speed", "course", "heading", "turn", "status", "accuracy")
_CLOSED_STATES = frozenset({"ended", "resolved"})
_BATCH = 100
_OUTBOX_RETRY_S = 1.0  # how often an unreachable outbox is tried again
#: At the first connect, retained topics an earlier run left are collected until none has
#: come for the quiet period (at most the limit), then those no longer current are cleared.
#: A connection that lasted this long was healthy: the back-off starts again from its start.
HEALTHY_AFTER_S = 10.0
RECONCILE_QUIET_S = 0.5
RECONCILE_LIMIT_S = 5.0
#: The client ids every MQTT 3.1.1 broker must accept (§3.1.3-5): 1-23 of [0-9a-zA-Z].
CLIENT_ID = re.compile(r"[0-9a-zA-Z]{1,23}")
_NOT_CLIENT_ID_CHAR = re.compile(r"[^0-9a-zA-Z]")
#: MQTT 3.1.1 CONNACK return codes (§3.2.2.3) by name. paho 2 reports them as the MQTT 5
#: reason codes it maps them to (second table).
CONNACK_NAMES = {1: "unacceptable protocol version", 2: "identifier rejected",
                 3: "server unavailable", 4: "bad user name or password",
                 5: "not authorized"}
_CONNACK_OF_REASON = {132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


class MqttError(Exception):
    """Base of the feed's errors."""


class MqttConfigError(MqttError, ValueError):
    """The feed's settings cannot work (URL, prefix, credentials, TLS files). ``field``:
    the config key at fault, when only the config file sets it (the TLS files)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def placed(self, origin: Callable[[str], str | None]) -> MqttConfigError:
        """This error after where ``origin`` says its field was written (``port.yaml:5``);
        itself when that is not known."""
        written = None if self.field is None else origin(self.field)
        return self if written is None else MqttConfigError(f"{written}: {self}", self.field)


class MqttConnectError(MqttError):
    """Connecting failed, or the connection was lost."""


class MqttRefusedError(MqttConnectError):
    """The broker refused the connection (a CONNACK return code): no retry will do until
    the broker or our settings change, unlike a broker that is away."""


class MqttAuthError(MqttRefusedError):
    """The broker refused our credentials."""


def _payload_time(payload: bytes) -> float:
    """The ``time`` of a retained vessel payload (Unix seconds; -inf when it has none; the
    caller treats a time that is not finite as none)."""
    try:
        stamp = json.loads(payload).get("time")
        return parse_iso(stamp) if isinstance(stamp, str) else -math.inf
    except (ValueError, AttributeError):
        return -math.inf


def _translate(exc: BaseException, client_id: str | None = None) -> MqttError:
    """aiomqtt/paho/socket errors → ours (the message never contains credentials; a refused
    identifier names ``client_id``)."""
    if isinstance(exc, MqttError):
        return exc
    if isinstance(exc, _Refused):  # a CONNACK refusal, said by its name
        rc = exc.rc
        code = getattr(rc, "value", rc)
        code = _CONNACK_OF_REASON.get(code, code) if isinstance(code, int) else code
        name = CONNACK_NAMES.get(code) if isinstance(code, int) else None
        said = f"{name} (CONNACK {code})" if name is not None else str(exc)
        if code == 2 and client_id is not None:
            said += f" for client id {client_id!r}"
        if code in (4, 5):
            return MqttAuthError(f"broker refused the credentials: {said}")
        return MqttRefusedError(f"broker refused the connection: {said}")
    if isinstance(exc, aiomqtt.MqttCodeError):
        return MqttConnectError(str(exc))
    return MqttConnectError(f"{type(exc).__name__}: {exc}")


class _ClientErrors(logging.Filter):
    """Keeps the error paho logs (a TLS alert such as "certificate required") for the
    feed's own line about the attempt, and holds it back from the log until connected: the
    attempt itself failed as "Operation timed out", and each retry repeated the error at
    ERROR. Once connected, paho's errors pass (one at most per lost connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None
        self.holding = True

    def attempt(self) -> None:
        """A new connection attempt: forget the last one's error, hold errors back."""
        self.last, self.holding = None, True

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        self.last = record.getMessage()
        return not self.holding

    def explain(self, err: MqttError) -> MqttError:
        """``err`` with the error paho logged during the attempt, if any; then forgets it."""
        seen, self.last = self.last, None
        if seen is None or seen in str(err):
            return err
        return type(err)(f"{err} ({seen})")


def _take_class(vessel: dict[str, Any], report: Report) -> None:
    """The vessel's AIS class from ``report``, as the API's picture takes it (called only
    when its message type changes or static data comes: not on every position)."""
    cls = report.ais_class
    if cls is not None:
        vessel["class"] = cls


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


class BrokerUrl(NamedTuple):
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def run_client_id(client_id: str | None, run: str) -> str:
    """The MQTT client id of a ``run`` ("live", "replay", "drill") given the configured one.

    A broker lets one connection hold an id and drops the older one: a drill or replay with
    the port's own config took the live service's connection over, and each reconnect took
    it back. The live service uses the configured id as it is (:func:`client_id_warning`
    says when a broker may refuse it). Every other id is made here, and always within what
    MQTT 3.1.1 guarantees (1-23 of [0-9a-zA-Z]): the configured id's letters and digits cut
    to 13 (else ``harbourwatch``), the run's letter (``l``, ``r``, ``d``) and 8 random hex
    digits, unique per process so two drills at once do not fight either. Never empty: a
    zero-length id is refused by brokers with ``allow_zero_length_clientid false``, and paho
    hid that refusal as a timeout, for ever. The feed's sessions are clean (its outbox, not
    the broker, keeps what is unsent), so a new id per run loses nothing.
    """
    if client_id and run == "live":
        return client_id
    base = _NOT_CLIENT_ID_CHAR.sub("", client_id or "")[:13] or "harbourwatch"
    return f"{base}{run[:1]}{secrets.token_hex(4)}"


def client_id_warning(client_id: str | None) -> str | None:
    """Why a broker may refuse a configured client id (None: every broker must take it).

    A warning, not an error: Mosquitto, EMQX and HiveMQ take longer ids and other
    characters, and a port's broker may authorise by such an id already."""
    if client_id is None or CLIENT_ID.fullmatch(client_id):
        return None
    return (f"client id {client_id!r} is not 1-23 letters and digits, all that MQTT 3.1.1 "
            "obliges a broker to accept: a strict broker refuses it (CONNACK 2, "
            "identifier rejected)")


def parse_url(url: str) -> BrokerUrl:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (default ports 1883/8883).

    A password in the URL is accepted (the CLI flag takes that form) but discouraged: it
    ends up in shell history and process lists; ``HARBOURWATCH_MQTT_PASSWORD`` does not.
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise MqttConfigError(f"MQTT URL scheme must be mqtt:// or mqtts://, not {scheme}://")
    if not parts.hostname:
        raise MqttConfigError("MQTT URL has no host")
    tls = scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise MqttConfigError(f"MQTT URL has a bad port: {exc}") from None
    return BrokerUrl(parts.hostname, port, tls, parts.username or None, parts.password)


def make_tls_context(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    """Client TLS context; ``insecure`` skips the host name check only (like mosquitto_pub)."""
    if key_file is not None and cert_file is None:
        raise MqttConfigError("MQTT TLS key file given without a certificate file")
    try:
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if ca_file is None else str(ca_file)
        )
    except (OSError, ssl.SSLError) as exc:
        raise MqttConfigError(f"mqtt.tls.ca_file {str(ca_file)!r}: {exc}",
                              "mqtt.tls.ca_file") from None
    if cert_file is not None:
        try:
            ctx.load_cert_chain(str(cert_file), None if key_file is None else str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise MqttConfigError(f"mqtt.tls.cert_file {str(cert_file)!r} / key_file "
                                  f"{None if key_file is None else str(key_file)!r}: "
                                  f"{exc}", "mqtt.tls.cert_file") from None
    if insecure:
        ctx.check_hostname = False
    ctx.sslsocket_class = _ClosingSSLSocket
    return ctx


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closed when its handshake fails: paho drops it unclosed (a refused certificate at
    every retry left a socket to the collector, with a ResourceWarning)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class _Client(aiomqtt.Client):
    """aiomqtt's client, but a connection that drops between its CONNACK and the end of
    ``__aenter__`` (a broker handing the client id's session to another client at once)
    is seen as dropped: aiomqtt swapped the failed ``_disconnected`` future for a new one
    that never completes, so the drop's exception was never retrieved (logged when the
    client was collected) and its reason never said (only the next publish failed)."""

    async def __aenter__(self) -> Self:
        before = self._disconnected
        fresh = not before.done()
        entered = await super().__aenter__()
        if fresh and before.done() and before is not self._disconnected:
            self._disconnected = before  # ``_watch`` ends with it, as after any drop
        return entered


class MqttFeed:
    """Publishes alerts, vessel state, source status and stats to an MQTT broker.

    Implements the :class:`harbourwatch.sinks.Sink` protocol. Construct it from plain
    values; nothing connects before :meth:`start`.
    """

    def __init__(
        self,
        url: str = "mqtt://127.0.0.1:1883",
        *,
        prefix: str | None = None,
        port_name: str = "port",
        drill: bool = False,
        replay: bool = False,
        username: str | None = None,
        password: str | None = None,
        tls_ca_file: str | Path | None = None,
        tls_cert_file: str | Path | None = None,
        tls_key_file: str | Path | None = None,
        tls_insecure: bool = False,
        tls: bool = False,
        outbox: Outbox | None = None,
        position_max_age_s: float = 300.0,
        vessel_live_s: float = 900.0,
        vessel_min_interval_s: float = 1.0,
        stats_interval_s: float = 60.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
        client_id: str | None = None,
        clock: Callable[[], float] | None = None,
        reconcile: bool = True,
    ) -> None:
        """``clock``: the rules' clock (it moves on with the wall time in a live run): with
        every source silent, vessels still leave the picture and their topics are cleared.

        ``replay``: a plain replay's feed, under ``<prefix>/replay`` (a drill's is under
        ``<prefix>/drill``): on the live prefix its ``available`` and alerts were taken for
        the live service's."""
        host, port, url_tls, url_user, url_password = parse_url(url)
        self.host, self.port = host, port
        self._username = username if username is not None else url_user
        if password is None:
            password = url_password
            if url_password is not None:
                log.warning("MQTT password taken from the URL; prefer %s", PASSWORD_ENV)
        if password is None and self._username is not None:
            password = os.environ.get(PASSWORD_ENV)
        if password is not None and self._username is None:
            raise MqttConfigError("an MQTT password needs a username")
        self._password = password
        tls_files = (tls_ca_file, tls_cert_file, tls_key_file)
        tls = tls or url_tls or any(x is not None for x in tls_files)
        self._tls: ssl.SSLContext | None = (
            make_tls_context(tls_ca_file, tls_cert_file, tls_key_file, tls_insecure)
            if tls else None
        )
        try:
            base = prefix if prefix is not None else default_prefix(port_name)
            self.topics = Topics.for_prefix(base, drill=drill, replay=replay)
            self.drill_topics = Topics.for_prefix(base, drill=True)
        except ValueError as exc:
            raise MqttConfigError(str(exc)) from None
        if (position_max_age_s <= 0 or vessel_live_s <= 0 or vessel_min_interval_s < 0
                or stats_interval_s <= 0):
            raise MqttConfigError("MQTT intervals and ages must be positive")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise MqttConfigError("MQTT back-off needs 0 < initial <= max")
        self.drill = drill
        #: Message times of another era than the live service's (a drill, a replay).
        self._recorded = drill or replay
        self.outbox: Outbox = outbox if outbox is not None else MemoryOutbox()
        self.position_max_age_s = position_max_age_s
        self.vessel_live_s = vessel_live_s
        self.vessel_min_interval_s = vessel_min_interval_s
        self.stats_interval_s = stats_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._keepalive = keepalive_s
        self._timeout = timeout_s
        self.stop_timeout_s = stop_timeout_s
        #: One per feed, not per connection: a reconnect with the same id makes the broker
        #: drop a half-open connection of ours at once, where a new id left it to time out
        #: later and publish its will ("offline") over our "online".
        self._client_id = client_id or run_client_id(None, "drill" if drill else "live")
        # A logger of this feed's own (not registered, propagating to the module's client
        # logger), so its filter sees only this feed's client.
        self._client_errors = _ClientErrors()
        self._client_log = logging.Logger(f"{__name__}.client")
        self._client_log.parent = logging.getLogger(f"{__name__}.client")
        self._client_log.addFilter(self._client_errors)
        self._clock = clock

        self._newest: float | None = None
        # Alert messages not yet in the outbox (on_alert must not wait for the outbox).
        self._to_persist: deque[tuple[str, bytes, int, bool]] = deque()
        self._unacked: set[int] = set()  # outbox ids added by this process, not yet acked
        #: why the outbox cannot send / keep alerts now (None: it can)
        self._outbox_errors: dict[str, Exception | None] = {"send": None, "keep": None}
        self._open_alerts: dict[str, bytes] = {}  # retained per-alert topic → payload
        self._vessels: dict[int, dict[str, Any]] = {}
        self._vessel_time: dict[int, float] = {}
        self._last_pub: dict[int, float] = {}
        self._ready: dict[int, None] = {}  # ordered set of MMSIs due for publishing
        self._heard: dict[int, float] = {}  # newest report of each vessel kept
        self._static_time: dict[int, float] = {}  # of each vessel's newest static data
        self._gone: dict[int, None] = {}  # published vessels left the picture: topic to clear
        #: Retained (topic, payload) seen while reconciling (None: not reconciling); once a
        #: run, and only when ``reconcile`` (the live service, a drill, a replay under its
        #: own branch: not a replay given a prefix, perhaps the live one, which would clear
        #: the live service's topics).
        self._left_behind: list[tuple[str, bytes]] | None = None
        self._reconciled = not reconcile
        self._reconcile_warned = False
        #: Per-alert topics this run cleared before its reconcile was done: their own clear
        #: is in the outbox, so the reconcile must not clear them a second time.
        self._cleared_unreconciled: set[str] = set()
        #: Vessels an earlier run left retained, by the time their payload says: cleared at
        #: a prune once that is older than ``vessel_live_s``, unless heard again by then.
        self._retained_before: dict[int, float] = {}
        self._next_prune = float("-inf")
        self._deferred: list[tuple[float, int]] = []  # heap of (due message time, mmsi)
        self._deferred_set: set[int] = set()
        self._sources: dict[str, bool] = {}
        self._sources_dirty: dict[str, None] = {}
        self._stats_provider: Callable[[], Mapping[str, Any]] | None = None
        self.counters: dict[str, int] = dict.fromkeys(
            ("connects", "connect_failures", "outbox_outages", "alerts_enqueued",
             "alert_messages_acked",
             "vessels_published", "vessels_rate_limited", "vessels_stale_dropped",
             "vessels_cleared", "stale_alerts_cleared",
             "stats_published"), 0)

        self._wake = asyncio.Event()
        self._persist_wake = asyncio.Event()
        self._persisted = asyncio.Event()
        self._delivered = asyncio.Event()
        # Held while a message is added and registered as unacknowledged: a database
        # outbox commits the row before ``add`` returns, and a drain reading it then sent
        # and acknowledged it before it was registered, leaving it "unacknowledged" for good
        # (the feed then never published ``stopped``).
        self._adding = asyncio.Lock()
        self._connected_event = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stats_due = 0.0

    @classmethod
    def from_config(cls, cfg: MqttConfig, *, port_name: str = "port", drill: bool = False,
                    outbox: Outbox | None = None, **overrides: Any) -> MqttFeed:
        """Build from ``harbourwatch.config.MqttConfig`` (``url`` must be set)."""
        if cfg.url is None:
            raise MqttConfigError("MQTT is off: no mqtt.url configured")
        kwargs: dict[str, Any] = {
            "prefix": cfg.prefix,
            "port_name": port_name,
            "drill": drill,
            "username": cfg.username,
            "password": None if cfg.password is None else cfg.password.get_secret_value(),
            "tls": cfg.tls.enabled,
            "tls_ca_file": cfg.tls.ca_file,
            "tls_cert_file": cfg.tls.cert_file,
            "tls_key_file": cfg.tls.key_file,
            "tls_insecure": cfg.tls.insecure,
            "client_id": cfg.client_id,
            "position_max_age_s": cfg.position_max_age_s,
            "stats_interval_s": cfg.stats_interval_s,
            "outbox": outbox,
        }
        kwargs.update(overrides)
        return cls(cfg.url, **kwargs)

    # ---- Sink protocol ----------------------------------------------------------------

    async def start(self) -> None:
        """Start the supervisor; returns at once (the broker may well be down)."""
        if self._tasks:
            return
        log.info("MQTT feed to %s:%d under %s%s", self.host, self.port, self.topics.root,
                 " (TLS)" if self._tls else "")
        self._tasks = [
            asyncio.create_task(self._persist_loop(), name="mqtt-outbox"),
            asyncio.create_task(self._supervise(), name="mqtt-supervisor"),
        ]

    def on_report(self, report: Report) -> None:
        """Merge a report into the vessel state; publish is coalesced and rate-limited.

        Not own-ship (VDO) reports, as the API's picture: the rules never judge them, and a
        forged VDO line with a real vessel's MMSI moved that vessel here unchecked."""
        if report.msg_type not in VESSEL_MSG_TYPES or report.own or report.not_admitted:
            return  # not admitted: beyond rules.picture.max_vessels, kept out as the rules do
        t = report.time
        if self._newest is None or t > self._newest:
            self._newest = t
        mmsi = report.mmsi
        state = self._vessels.get(mmsi)
        if state is None:  # the API's fields, so that both give a platform the same vessel
            state = self._vessels[mmsi] = blank_vessel(mmsi)
        if t > self._heard.get(mmsi, float("-inf")):
            self._heard[mmsi] = t
        changed = False
        if (report.has_position and not report.fix_rejected
                and t >= self._vessel_time.get(mmsi, float("-inf"))):
            for name in POSITION_FIELDS:
                state[name] = getattr(report, name)
            if state["msg_type"] != report.msg_type:  # seldom: its class may change too
                state["msg_type"] = report.msg_type
                _take_class(state, report)
            state["time"] = iso_time(t)
            state["sources"] = list(report.sources)
            self._vessel_time[mmsi] = t
            changed = True
        statics = {n: getattr(report, n) for n in STATIC_FIELDS if getattr(report, n) is not None}
        if statics:
            newer = t >= self._static_time.get(mmsi, float("-inf"))
            state.update(statics_to_apply(state, statics, newer))
            _take_class(state, report)
            if newer:
                self._static_time[mmsi] = t
            # Published with its first position, as the API lists it: a vessel known only
            # by its static data has no place on the platform's chart.
            changed = changed or mmsi in self._vessel_time
        if changed:
            self._schedule_vessel(mmsi, t)
        if self._newest >= self._next_prune:
            self._prune_vessels(self._newest)

    def remember_open(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Alerts still open after a restart (as the store has them): their retained topics
        are published again at every connect, like those of alerts raised since (a broker
        without persistence has lost them). Their ``time`` is their last change, as it was
        published before the restart (``started_at`` took it backwards). A resolved one
        (the rules follow it to its end) stays cleared, as at its resolve."""
        for stored in alerts:
            if stored.get("state") in _CLOSED_STATES:
                continue
            alert, _topics, per_alert = self._placed(stored)
            when = stored.get("updated_at") or stored.get("started_at")
            self._open_alerts[per_alert] = _dumps({**alert, "time": when})

    def _placed(self, given: Mapping[str, Any]) -> tuple[dict[str, Any], Topics, str]:
        """The alert marked drill when it or this feed is, its topics and retained topic."""
        alert = as_pushed(given)
        drill = alert["drill"] = self.drill or bool(alert.get("drill"))
        topics = self.drill_topics if drill else self.topics
        return alert, topics, topics.alert(str(alert.get("rule", "alert")),
                                           str(alert.get("id", "")))

    def on_alert(self, event: AlertEvent) -> None:
        """Queue the transition (and the retained per-alert topic) for the outbox."""
        alert, topics, per_alert = self._placed(event.alert)
        drill = alert["drill"]
        when = iso_time(event.time)
        if self._newest is None or event.time > self._newest:
            self._newest = event.time
        transition = {"type": str(event.transition), "alert": alert, "time": when,
                      "drill": drill}
        self._enqueue(topics.alerts, _dumps(transition), 1, False)
        if event.transition is Transition.END or alert.get("state") in _CLOSED_STATES:
            # Cleared only when retained: an event alert (a zone entry) is born ended and
            # its topic never had a payload, and a resolved alert was cleared at its
            # resolve; an empty retained message reaches every subscriber as a message.
            if self._open_alerts.pop(per_alert, None) is not None:
                self._enqueue(per_alert, b"", 1, True)  # empty retained = clear
                if not self._reconciled:
                    self._cleared_unreconciled.add(per_alert)
        else:
            payload = _dumps({**alert, "time": when})
            self._open_alerts[per_alert] = payload
            self._enqueue(per_alert, payload, 1, True)
        self.counters["alerts_enqueued"] += 1

    async def stop(self) -> None:
        """Flush queued alerts and vessels, publish ``stopped``, disconnect cleanly.

        Gives up after ``stop_timeout_s`` (what a persistent outbox holds is sent on the
        next start). Closes the outbox.
        """
        if not self._tasks:
            await self.outbox.close()
            return
        self._stopping = True
        self._wake.set()
        self._persist_wake.set()
        supervisor = self._tasks[1]
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(supervisor), self.stop_timeout_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        # Whatever on_alert queued after the last persist pass still reaches the outbox.
        try:
            await self._persist_now()
        except Exception as exc:
            log.error("MQTT outbox: %d alert messages could not be kept at stop and are "
                      "lost (%s)", len(self._to_persist), exc)
        else:
            await self._warn_undelivered()
        await self.outbox.close()

    async def _warn_undelivered(self) -> None:
        """Say what the broker never acknowledged: a stop left it silently."""
        try:
            left = len(await self.outbox.pending(UNDELIVERED_COUNTED))
        except Exception:  # the store is away: its own outage was logged
            return
        if not left:
            return
        more = "+" if left >= UNDELIVERED_COUNTED else ""
        if isinstance(self.outbox, MemoryOutbox):
            log.warning("MQTT: %d%s alert messages were never acknowledged by the broker and "
                        "are lost (no store to keep them)", left, more)
        else:
            log.warning("MQTT: %d%s alert messages were never acknowledged by the broker; "
                        "the outbox keeps them for the next start of this kind of run",
                        left, more)

    # ---- further inputs ---------------------------------------------------------------

    def source_status(self, name: str, online: bool) -> None:
        """A source (receiver) came up or went silent; published retained."""
        if self._sources.get(name) is online:
            return
        self._sources[name] = online
        self._sources_dirty[name] = None
        self._wake.set()

    def set_stats_provider(self, provider: Callable[[], Mapping[str, Any]]) -> None:
        """Counters merged into every ``<p>/stats`` message (called on the event loop)."""
        self._stats_provider = provider

    # ---- observation (tests, stats, health) -------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected_event.is_set()

    def status(self) -> dict[str, Any]:
        """Connected or not, the outbox, and the counters: for ``<p>/stats`` and the API's
        ``/stats``, ``/metrics`` and ``/health`` (which still answer while the broker is away)."""
        return {"connected": self.connected,
                "outbox_up": all(e is None for e in self._outbox_errors.values()),
                "outbox_unacked": len(self._unacked), "vessels": len(self._vessels),
                **self.counters}

    async def wait_connected(self) -> None:
        """Return once a connection is up (use with a timeout)."""
        await self._connected_event.wait()

    async def wait_delivered(self) -> None:
        """Return once every alert message handed over (in this process) is acknowledged."""
        while self._to_persist or self._unacked:
            self._delivered.clear()
            await self._delivered.wait()

    async def wait_persisted(self) -> None:
        """Return once every alert handed over so far is in the outbox."""
        while self._to_persist:
            self._persisted.clear()
            await self._persisted.wait()

    # ---- internals: queues --------------------------------------------------------------

    def _enqueue(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self._to_persist.append((topic, payload, qos, retain))
        self._persist_wake.set()

    async def _persist_now(self) -> None:
        while self._to_persist:
            topic, payload, qos, retain = self._to_persist[0]
            async with self._adding:
                entry_id = await self.outbox.add(topic, payload, qos, retain)
                self._to_persist.popleft()  # only after the add: a failed add is retried
                self._unacked.add(entry_id)

    async def _persist_loop(self) -> None:
        """Move queued alert messages into the outbox, whether connected or not."""
        while True:
            await self._persist_wake.wait()
            self._persist_wake.clear()
            try:
                await self._persist_now()
                self._outbox_back("keep")
            except Exception as exc:
                self._outbox_away(exc, "keep")  # logged once per outage, not every second
                await asyncio.sleep(_OUTBOX_RETRY_S)
                self._persist_wake.set()
            self._persisted.set()
            self._wake.set()

    def _schedule_vessel(self, mmsi: int, t: float) -> None:
        if mmsi in self._ready:
            return
        last = self._last_pub.get(mmsi)
        if last is None or t - last >= self.vessel_min_interval_s:
            self._ready[mmsi] = None
            self._wake.set()
        else:
            self.counters["vessels_rate_limited"] += 1
            if mmsi not in self._deferred_set:
                if not self._deferred:  # the writer sleeps until stats: it must look again
                    self._wake.set()
                self._deferred_set.add(mmsi)
                heapq.heappush(self._deferred, (last + self.vessel_min_interval_s, mmsi))

    def _release_deferred(self, everything: bool = False) -> None:
        """Vessels held back by the rate limit that fall due now: on the rules' clock, or a
        vessel's last position before every source went quiet was never sent."""
        now = self._now()
        newest = now if now is not None else float("-inf")
        while self._deferred and (everything or self._deferred[0][0] <= newest):
            _, mmsi = heapq.heappop(self._deferred)
            self._deferred_set.discard(mmsi)
            self._ready[mmsi] = None

    def _now(self) -> float | None:
        """The rules' clock when there is one, else the newest message time seen.

        The newest message time stands still while no report comes; the rules' clock
        moves on with the wall time in a live run (a position heard before the broker went
        away was sent on reconnect, however long after)."""
        now = self._newest
        if self._clock is not None:
            clock = self._clock()
            if math.isfinite(clock) and (now is None or clock > now):
                now = clock
        return now

    def _is_stale(self, mmsi: int) -> bool:
        t = self._vessel_time.get(mmsi)
        now = self._now()
        return t is None or now is None or now - t > self.position_max_age_s

    def _vessel_payload(self, mmsi: int) -> bytes:
        static = self._static_time.get(mmsi)
        return _dumps({**self._vessels[mmsi], "drill": self.drill,
                       "static_time": None if static is None else iso_time(static)})

    # ---- internals: connection ----------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        client = _Client(
            self.host,
            self.port,
            username=self._username,
            password=self._password,
            identifier=self._client_id,
            # Clean: nothing of a session is kept by the broker (the outbox keeps unsent
            # alerts), so a drill's or replay's id of its own loses nothing (run_client_id).
            clean_session=True,
            logger=self._client_log,
            will=aiomqtt.Will(self.topics.available, b"offline", qos=1, retain=True),
            keepalive=self._keepalive,
            timeout=self._timeout,
            tls_context=self._tls,
        )
        # We pipeline up to two batches on purpose; aiomqtt would warn above 10.
        client.pending_calls_threshold = 2 * _BATCH + 10
        return client

    def _backoff(self, attempt: int) -> float:
        cap = min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(attempt, 30))
        return random.uniform(cap / 2, cap)  # "equal jitter": never zero, never in step

    async def _supervise(self) -> None:
        # The log says when an outage starts and when it ends; the retries in between are
        # at debug level (a broker away for a day logged a warning every 30 s).
        loop = asyncio.get_running_loop()
        attempt = 0
        short_warned = False
        said: type[MqttError] | None = None  # the kind of failure last said aloud
        while True:
            connected_at: float | None = None
            try:
                self._client_errors.attempt()
                async with self._make_client() as client:
                    self.counters["connects"] += 1
                    self._client_errors.holding = False
                    if not short_warned:
                        log.log(logging.WARNING if attempt else logging.INFO,
                                "MQTT connected to %s:%d%s", self.host, self.port,
                                f" after {attempt} failed attempts" if attempt else "")
                    connected_at = loop.time()
                    # Said once the connection has held (its own line was held back).
                    stable = loop.call_later(
                        HEALTHY_AFTER_S, log.warning, "MQTT %s:%d: connected, and the "
                        "connection holds again", self.host, self.port) if short_warned \
                        else None
                    try:
                        await self._run_connected(client)
                    finally:
                        if stable is not None:
                            stable.cancel()
                    return  # clean stop
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = self._client_errors.explain(_translate(exc, self._client_id))
                self.counters["connect_failures"] += 1
                if connected_at is not None and loop.time() - connected_at >= HEALTHY_AFTER_S:
                    attempt, short_warned, said = 0, False, None  # a real outage: afresh
                elif connected_at is not None and attempt and not short_warned:
                    # Dropped again at once (a second client with our client_id takes the
                    # session over, and each reconnect takes it back): back off, say so once.
                    short_warned = True
                    log.warning("MQTT %s:%d: the connection keeps dropping right after it is "
                                "made (%s); is another client using client_id %r?", self.host,
                                self.port, err, self._client_id)
                # Repeats at debug level, but a new reason is said: a broker back with a
                # changed password refused every retry at debug, after "Disconnected".
                new_reason = not attempt or type(err) is not said
                level = (logging.DEBUG if not new_reason else logging.ERROR
                         if isinstance(err, MqttRefusedError) else logging.WARNING)
                said = type(err)
                log.log(level, "MQTT %s:%d: %s%s", self.host, self.port, err,
                        "; retrying with back-off" if new_reason else "")
            finally:
                self._connected_event.clear()
            delay = self._backoff(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def _run_connected(self, client: aiomqtt.Client) -> None:
        """Run the writer until it finishes (stop) or the connection drops (raises)."""
        watcher = asyncio.create_task(self._watch(client))
        writer = asyncio.create_task(self._write_loop(client))
        try:
            await asyncio.wait({watcher, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, writer):
                task.cancel()
            await asyncio.gather(watcher, writer, return_exceptions=True)
        if writer.done() and not writer.cancelled() and writer.exception() is None:
            return
        for task in (writer, watcher):
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                raise _translate(error) from error
        raise MqttConnectError("connection ended")

    async def _watch(self, client: aiomqtt.Client) -> None:
        """The iterator ends, raising, on disconnect. We subscribe only while reconciling:
        retained messages then name the topics an earlier run left."""
        async for message in client.messages:
            payload = message.payload
            if message.retain and self._left_behind is not None \
                    and isinstance(payload, bytes | bytearray) and payload:
                self._left_behind.append((str(message.topic), bytes(payload)))

    async def _reconcile(self, client: aiomqtt.Client) -> None:
        """Clear what an earlier run left retained that is no longer current: an alert not
        open now (a replay's, one whose clear was lost), and, once its time is older than
        ``vessel_live_s`` by this run's clock, a vessel not heard again (one that left while
        the service was down). The broker kept them for ever, and the platform showed them
        as live. Needs read access to the feed's own topics (without it nothing arrives)."""
        root = self.topics.root
        filters = [f"{root}/vessels/+", f"{root}/alerts/+/+"]
        self._left_behind = []
        loop = asyncio.get_running_loop()
        try:
            await client.subscribe([(f, 0) for f in filters])
            deadline = loop.time() + RECONCILE_LIMIT_S
            seen = -1
            while seen != len(self._left_behind) and loop.time() < deadline:
                seen = len(self._left_behind)
                await asyncio.sleep(RECONCILE_QUIET_S)
            await client.unsubscribe(filters)
        except aiomqtt.MqttError as exc:  # tried again at the next connect
            if not self._reconcile_warned:
                self._reconcile_warned = True
                log.warning("MQTT: could not read what an earlier run left retained (%s); "
                            "trying again at the next connect", exc)
            return  # the feed goes on (a lost connection shows in its next publish)
        finally:  # a connection lost meanwhile (cancelled) leaves it to the next connect
            found, self._left_behind = self._left_behind or [], None
        self._reconciled = True
        ours, self._cleared_unreconciled = self._cleared_unreconciled, set()
        stale_alerts = [(t, b"", 1, True) for t, _ in found
                        if t.startswith(f"{root}/alerts/") and t not in self._open_alerts
                        and t not in ours]
        vessels = f"{root}/vessels/"
        for topic, payload in found:
            level = topic.removeprefix(vessels)
            if topic.startswith(vessels) and level.isdigit() \
                    and int(level) not in self._last_pub:
                # A drill's or replay's message times are another era's: an earlier run's
                # vessels go at once, as do times that are not times.
                t = _payload_time(payload)
                self._retained_before[int(level)] = (
                    -math.inf if self._recorded or not math.isfinite(t) else t)
        self.counters["stale_alerts_cleared"] += await self._publish_all(client, stale_alerts)
        if stale_alerts or self._retained_before:
            log.info("MQTT: an earlier run left retained %d alerts no longer open (cleared) "
                     "and %d vessels (cleared unless heard within %.0f s of their last "
                     "time)", len(stale_alerts), len(self._retained_before),
                     self.vessel_live_s)
            now = self._clock() if self._clock is not None else self._newest
            if now is not None and math.isfinite(now):
                self._prune_vessels(now)
            else:
                self._next_prune = -math.inf  # judged at the first report

    async def _write_loop(self, client: aiomqtt.Client) -> None:
        await client.publish(self.topics.available, b"online", qos=1, retain=True)
        self._connected_event.set()  # "connected" = up and announced
        await self._drain_outbox(client)
        await self._republish_retained(client)
        if not self._reconciled:
            await self._reconcile(client)
        loop = asyncio.get_running_loop()
        self._stats_due = loop.time() + self.stats_interval_s
        while True:
            self._wake.clear()
            await self._drain_outbox(client)
            await self._publish_sources(client)
            self._release_deferred(everything=self._stopping)
            await self._publish_vessels(client, list(self._ready))
            if self._clock is not None:  # no report may come to move message time on
                now = self._clock()
                if now >= self._next_prune and math.isfinite(now):
                    self._prune_vessels(now)
            await self._clear_gone_vessels(client)
            if loop.time() >= self._stats_due:
                await self._publish_stats(client)
                self._stats_due = loop.time() + self.stats_interval_s
            if self._stopping and not self._to_persist and not self._unacked \
                    and not self._ready and not self._sources_dirty:
                await client.publish(self.topics.available, b"stopped", qos=1, retain=True)
                return
            wait = max(0.0, self._stats_due - loop.time())
            if self._deferred:
                wait = min(wait, 0.25)  # deferred vessels fall due as the clock moves
            if self._outbox_errors["send"] is not None:
                wait = min(wait, _OUTBOX_RETRY_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _publish_all(self, client: aiomqtt.Client,
                           messages: list[tuple[str, bytes, int, bool]]) -> int:
        """Publish in order, pipelined; return how many from the start were acknowledged.

        paho sends in call order on one connection and the broker acks QoS 1 in order, so
        the acknowledged prefix is exactly what is safe to mark done.
        """
        tasks = [
            asyncio.ensure_future(client.publish(t, p, qos=q, retain=r))
            for t, p, q, r in messages
        ]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for i, result in enumerate(results):
            if isinstance(result, BaseException):
                if i == 0 or not isinstance(result, Exception):
                    raise result
                return i
        return len(messages)

    async def _drain_outbox(self, client: aiomqtt.Client) -> None:
        """Publish the outbox in order. When the outbox cannot be read or updated (the
        database holding it is away), alerts wait for it and the rest of the feed goes on:
        dropping the broker for that stopped vessels too, and reconnected in a loop."""
        while True:
            try:
                async with self._adding:
                    batch: list[OutboxEntry] = await self.outbox.pending(_BATCH)
            except Exception as exc:
                self._outbox_away(exc)
                return
            if not batch:
                self._outbox_back()
                self._delivered.set()
                return
            acked = await self._publish_all(
                client, [(e.topic, e.payload, e.qos, e.retain) for e in batch])
            try:
                await self.outbox.done([e.id for e in batch[:acked]])
            except Exception as exc:
                self._outbox_away(exc)  # sent again once it is back: at least once
                return
            self._outbox_back()
            self._unacked.difference_update(e.id for e in batch[:acked])
            if not self._unacked:
                self._delivered.set()
            self.counters["alert_messages_acked"] += acked
            if acked < len(batch):
                raise MqttConnectError("alert publish not acknowledged")

    def _outbox_away(self, exc: Exception, side: str = "send") -> None:
        """The outbox failed while sending (reading or marking done) or keeping (adding)
        alerts: warned once per outage of each side, so a store that reads but cannot
        write does not flap."""
        if self._outbox_errors[side] is None:
            log.warning("MQTT outbox unavailable for %s alerts (%s): they wait for it, "
                        "vessels go on", "sending" if side == "send" else "keeping", exc)
            self.counters["outbox_outages"] += 1
        self._outbox_errors[side] = exc

    def _outbox_back(self, side: str = "send") -> None:
        if self._outbox_errors[side] is not None:
            log.warning("MQTT outbox available again for %s alerts",
                        "sending" if side == "send" else "keeping")
            self._outbox_errors[side] = None

    async def _republish_retained(self, client: aiomqtt.Client) -> None:
        """After every connect: open alerts, sources, fresh vessels (broker may be new)."""
        alerts = [(t, p, 1, True) for t, p in self._open_alerts.items()]
        await self._publish_all(client, alerts)
        for name in self._sources:
            self._sources_dirty[name] = None
        await self._publish_sources(client)
        self._deferred.clear()
        self._deferred_set.clear()
        self._ready.clear()
        await self._publish_vessels(client, list(self._vessels))

    async def _publish_sources(self, client: aiomqtt.Client) -> None:
        while self._sources_dirty:
            name = next(iter(self._sources_dirty))
            online = self._sources[name]
            await client.publish(self.topics.source_status(name),
                                 b"online" if online else b"offline", qos=1, retain=True)
            if self._sources.get(name) is online:  # unchanged while we were publishing
                self._sources_dirty.pop(name, None)

    async def _publish_vessels(self, client: aiomqtt.Client, mmsis: list[int]) -> None:
        for start in range(0, len(mmsis), _BATCH):
            chunk: list[int] = []
            messages: list[tuple[str, bytes, int, bool]] = []
            for mmsi in mmsis[start:start + _BATCH]:
                self._ready.pop(mmsi, None)
                if mmsi not in self._vessels:
                    continue
                if self._is_stale(mmsi):
                    # Freshness limit: a late position misleads more than a missing one.
                    self.counters["vessels_stale_dropped"] += 1
                    continue
                chunk.append(mmsi)
                messages.append((self.topics.vessel(mmsi), self._vessel_payload(mmsi), 0, True))
            done = await self._publish_all(client, messages)
            for mmsi in chunk[:done]:
                t = self._vessel_time.get(mmsi)
                if t is None:  # it left the picture while being published: clear its topic
                    self._gone[mmsi] = None
                else:
                    self._last_pub[mmsi] = t
            self.counters["vessels_published"] += done

    def _prune_vessels(self, newest: float) -> None:
        """Vessels not heard for ``vessel_live_s`` of message time leave the picture, as
        they leave the API's: their state goes (connected or not) and the retained topic
        of each one published is cleared, so the broker does not keep every MMSI ever
        heard (a garbled message's among them)."""
        self._next_prune = newest + PRUNE_EVERY_S
        horizon = newest - self.vessel_live_s
        for mmsi in [m for m, t in self._heard.items() if t < horizon]:
            self._drop_vessel(mmsi)
        for mmsi, t in list(self._retained_before.items()):
            if mmsi in self._last_pub:
                del self._retained_before[mmsi]  # heard again: this run's topic now
            elif t < horizon:
                del self._retained_before[mmsi]
                self._gone[mmsi] = None
        if self._gone:
            self._wake.set()

    def drop_vessels(self, mmsis: Iterable[int]) -> None:
        """Vessels the rules evicted at their bound (``Pipeline._drop_vessels``): their state
        goes, and the retained topic of each one published is cleared."""
        for mmsi in mmsis:
            self._drop_vessel(mmsi)
        if self._gone:
            self._wake.set()

    def _drop_vessel(self, mmsi: int) -> None:
        for table in (self._heard, self._vessels, self._vessel_time, self._ready,
                      self._static_time):
            table.pop(mmsi, None)
        if self._last_pub.pop(mmsi, None) is not None:
            self._gone[mmsi] = None

    async def _clear_gone_vessels(self, client: aiomqtt.Client) -> None:
        for mmsi in [m for m in self._gone if m in self._last_pub]:
            del self._gone[mmsi]  # back and published again since: its topic is current
        while self._gone:
            mmsis = list(self._gone)[:_BATCH]
            done = await self._publish_all(
                client, [(self.topics.vessel(mmsi), b"", 0, True) for mmsi in mmsis])
            for mmsi in mmsis[:done]:
                self._gone.pop(mmsi, None)
            self.counters["vessels_cleared"] += done
            if done < len(mmsis):
                return

    async def _publish_stats(self, client: aiomqtt.Client) -> None:
        body: dict[str, Any] = {}
        if self._stats_provider is not None:
            try:
                body.update(self._stats_provider())
            except Exception:
                log.exception("MQTT stats provider failed")
        body["mqtt"] = self.status()
        body["time"] = None if self._newest is None else iso_time(self._newest)
        body["wall_time"] = iso_time(round(time.time(), 3))
        body["drill"] = self.drill
        await client.publish(self.topics.stats, _dumps(body), qos=0, retain=False)
        self.counters["stats_published"] += 1

    def __repr__(self) -> str:  # never shows the password
        return (f"MqttFeed({self.host}:{self.port}, root={self.topics.root!r}, "
                f"user={self._username!r}, tls={self._tls is not None})")
