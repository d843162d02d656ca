"""From vessels to a log: transmissions at ITU-R M.1371 intervals, reception by two receivers,
pyais encoding, NMEA 4.10 tag blocks, sorted by time.

Reporting intervals (ITU-R M.1371, Table 1/2): class A 180 s at anchor or moored and not
faster than 3 kn, 10 s up to 14 kn, 6 s up to 23 kn, 2 s above; class B (CS) 180 s below 2 kn,
else 30 s. Static data every 360 s (type 5 for class A, 24A and 24B for class B), and at
once when it changes. An AIS-SART sends once a minute.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyais import encode_dict

from replay.scenario.kinematics import STATUS_AT_ANCHOR, STATUS_MOORED, Kin
from replay.scenario.traffic import Vessel, World

STATIC_EVERY_S = 360.0
DIMENSIONS = ("to_bow", "to_stern", "to_port", "to_starboard")
BASE_EVERY_S = (30.0, 60.0)


def interval(ais_class: str, kin: Kin) -> float:
    if ais_class == "SART":
        return 60.0
    if ais_class == "B":
        return 180.0 if kin.speed < 2.0 else 30.0
    if kin.status in (STATUS_AT_ANCHOR, STATUS_MOORED) and kin.speed <= 3.0:
        return 180.0
    if kin.speed <= 14.0:
        return 10.0
    if kin.speed <= 23.0:
        return 6.0
    return 2.0


@dataclass(slots=True)
class Tx:
    """One transmission: when, where the transmitter really is, and the message fields."""

    t: float
    x: float
    y: float
    msg: dict[str, Any]
    mmsi: int


def checksum(text: str) -> str:
    value = 0
    for ch in text.encode("ascii"):
        value ^= ch
    return f"{value:02X}"


def tag_block(receiver: str, t: int) -> str:
    body = f"s:{receiver},c:{t}"
    return f"\\{body}*{checksum(body)}\\"


def _position_msg(vessel: Vessel, kin: Kin, lon: float, lat: float, t: float,
                  convergence: float) -> dict[str, Any]:
    """``kin`` moves in grid metres: its course and heading are grid bearings, sent as true
    ones (plus the meridian convergence at the fix, in degrees)."""
    second = int(t) % 60
    speed = round(min(max(kin.speed, 0.0), 102.2), 1)
    course = round((kin.course + convergence) % 360.0, 1) % 360.0
    heading = round(kin.heading + convergence) % 360
    if vessel.ais_class == "B":
        return {"type": 18, "mmsi": vessel.mmsi, "lon": lon, "lat": lat, "speed": speed,
                "course": course, "heading": heading, "second": second, "accuracy": 1,
                "cs": 1, "dsc": 1, "band": 1, "msg22": 1}
    msg_type = 3 if vessel.rng.random() < 0.1 else 1
    return {"type": msg_type, "mmsi": vessel.mmsi, "status": kin.status, "turn": 0,
            "speed": speed, "accuracy": 1, "lon": lon, "lat": lat, "course": course,
            "heading": 511 if vessel.ais_class == "SART" else heading, "second": second}


def _static_msgs(vessel: Vessel, t: float) -> list[dict[str, Any]]:
    s = vessel.static_at(t)
    dims: dict[str, Any] = {k: s[k] for k in DIMENSIONS if k in s}
    if vessel.ais_class == "B":
        return [{"type": 24, "mmsi": vessel.mmsi, "partno": 0, "shipname": s["shipname"]},
                {"type": 24, "mmsi": vessel.mmsi, "partno": 1, "ship_type": s["shiptype"],
                 "callsign": s.get("callsign", ""), "vendorid": "SYN", **dims}]
    if vessel.ais_class == "SART":
        return []
    eta = datetime.fromtimestamp(t + 86400, UTC)
    return [{"type": 5, "mmsi": vessel.mmsi, "ais_version": 2, "imo": s.get("imo", 0),
             "callsign": s.get("callsign", ""), "shipname": s["shipname"],
             "ship_type": s["shiptype"], **dims, "epfd": 1, "month": eta.month,
             "day": eta.day, "hour": eta.hour, "minute": 0,
             "draught": s.get("draught", 0.0), "destination": s.get("destination", ""),
             "dte": 0}]


def transmissions(world: World, vessel: Vessel) -> Iterator[Tx]:
    """Everything one vessel sends within the scenario, in time order."""
    plan = vessel.plan
    lay = world.layout
    projector = lay.zones.projector
    r = vessel.rng
    t = max(plan.t0, world.start + r.uniform(0.0, 12.0))
    end = min(plan.t1, world.end)
    next_static = t + r.uniform(0.0, STATIC_EVERY_S) if vessel.ais_class != "SART" else math.inf
    extra = sorted(vessel.static_now)
    out: list[Tx] = []
    glitches = sorted(vessel.glitches)
    while t < end:
        kin = plan.at(t)
        if kin is None:
            break
        step = interval(vessel.ais_class, kin) + r.uniform(-0.3, 0.3)
        if not vessel.silent(t):
            x, y = kin.x, kin.y
            if glitches and glitches[0][0] <= t:
                _, dx, dy = glitches.pop(0)
                x, y = x + dx, y + dy
            lon, lat = lay.lonlat(x, y)
            gamma = math.degrees(projector.convergence(lon, lat)) if projector else 0.0
            out.append(Tx(t, kin.x, kin.y, _position_msg(vessel, kin, lon, lat, t, gamma),
                          vessel.mmsi))
        while (next_static <= t + step or (extra and extra[0] <= t + step)) and (
                min(next_static, extra[0] if extra else math.inf) < end):
            ts = min(next_static, extra[0] if extra else math.inf)
            if extra and extra[0] == ts:
                extra.pop(0)
            else:
                next_static += STATIC_EVERY_S
            ks = plan.at(ts)
            if ks is not None and not vessel.silent(ts):
                for i, msg in enumerate(_static_msgs(vessel, ts)):
                    out.append(Tx(ts + i * 0.5, ks.x, ks.y, msg, vessel.mmsi))
        t += step
    out.sort(key=lambda tx: tx.t)
    yield from out


def base_station_msgs(world: World) -> Iterator[Tx]:
    r = world.rng
    for rec in world.layout.receivers:
        every = r.uniform(*BASE_EVERY_S)
        t = world.start + r.uniform(0.0, every)
        lon, lat = world.layout.lonlat(*rec.site)
        while t < world.end:
            moment = datetime.fromtimestamp(int(t), UTC)
            yield Tx(t, rec.site[0], rec.site[1],
                     {"type": 4, "mmsi": rec.base_mmsi, "year": moment.year,
                      "month": moment.month, "day": moment.day, "hour": moment.hour,
                      "minute": moment.minute, "second": moment.second, "accuracy": 1,
                      "lon": lon, "lat": lat, "epfd": 7}, rec.base_mmsi)
            t += every


@dataclass(slots=True)
class LogStats:
    lines: int
    transmissions: int
    heard: int
    duplicates: int
    per_receiver: dict[str, int]


def render(world: World, txs: list[Tx], rng: random.Random) -> tuple[list[str], LogStats]:
    """Receive, encode and sort: the log lines (without line ends) and counts."""
    rows: list[tuple[int, int, int, int, str]] = []
    names = [r.name for r in world.layout.receivers]
    seq = dict.fromkeys(names, 0)
    per_receiver = dict.fromkeys(names, 0)
    heard = duplicates = 0
    for n, tx in enumerate(sorted(txs, key=lambda tx: (tx.t, tx.mmsi))):
        hearing = world.heard(tx.x, tx.y, tx.t)
        if not hearing:
            continue
        heard += 1
        duplicates += len(hearing) - 1
        channel = "A" if rng.random() < 0.5 else "B"
        encoded: dict[int, list[str]] = {}
        for name in hearing:
            stamp = int(tx.t + rng.uniform(0.0, 0.8))
            idx = names.index(name)
            seq_id: int | None = None
            key = 1
            msg_type = tx.msg["type"]
            if msg_type == 5:
                seq[name] = (seq[name] + 1) % 10
                seq_id = seq[name]
                key = seq_id + 10
            sentences = encoded.get(key)
            if sentences is None:
                sentences = encoded[key] = encode_dict(
                    tx.msg, talker_id="AI", sentence_type="VDM", radio_channel=channel,
                    seq_id=seq_id)
            block = tag_block(name, stamp)
            for frag, sentence in enumerate(sentences):
                rows.append((stamp, idx, n, frag, block + sentence))
            per_receiver[name] += 1
    rows.sort()
    lines = [row[4] for row in rows]
    return lines, LogStats(lines=len(lines), transmissions=len(txs), heard=heard,
                           duplicates=duplicates, per_receiver=per_receiver)
