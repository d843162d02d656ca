"""Builders for ingest tests: valid NMEA sentences and tag blocks with correct checksums.

The checksum here is computed with a plain byte loop, independently of
``ingest.nmea.xor_checksum``, so the tests also check the project's fast version.
Payloads come from pyais's encoder, so they are real AIS bit layouts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import reduce
from pathlib import Path
from typing import Any

from pyais import encode_dict

from ingest.ingestor import Ingestor
from ingest.report import Report
from tests.paths import FIXTURES


def fixture(*parts: str) -> Path:
    """Path of a file under the repository's ``fixtures/``."""
    return FIXTURES.joinpath(*parts)


def checksum(body: str) -> str:
    """NMEA checksum (XOR of every character between the marker and ``*``), two hex digits."""
    return f"{reduce(lambda acc, ch: acc ^ ord(ch), body, 0):02X}"


def sentence(payload: str, fill: int = 0, *, count: int = 1, number: int = 1, seq: str = "",
             channel: str = "A", talker: str = "AI", kind: str = "VDM") -> str:
    """One ``!..VDM`` sentence with a correct checksum."""
    body = f"{talker}{kind},{count},{number},{seq},{channel},{payload},{fill}"
    return f"!{body}*{checksum(body)}"


def tag_block(**fields: str | int) -> str:
    """An NMEA 4.10 tag block ``\\c:..,s:..*hh\\`` (keyword order kept) with its checksum."""
    content = ",".join(f"{key}:{value}" for key, value in fields.items())
    return f"\\{content}*{checksum(content)}\\"


def group_tag(number: int, count: int, group: int, **fields: str | int) -> str:
    """A tag block with a ``g:`` group field first (``g:1-3-42``), then ``fields``."""
    content = ",".join([f"g:{number}-{count}-{group}"]
                       + [f"{key}:{value}" for key, value in fields.items()])
    return f"\\{content}*{checksum(content)}\\"


def encode(data: dict[str, Any]) -> tuple[str, int]:
    """Armoured payload and fill bits of one message (any length; never split)."""
    parts = encode_dict(data, talker_id="AI", sentence_type="VDM", radio_channel="A")
    payload = ""
    fill = 0
    for text in parts:
        fields = text.split("*")[0].split(",")
        payload += fields[5]
        fill = int(fields[6])
    return payload, fill


def single(data: dict[str, Any], *, channel: str = "A", talker: str = "AI",
           kind: str = "VDM") -> str:
    """A whole message as one sentence (even when longer than 82 characters)."""
    payload, fill = encode(data)
    return sentence(payload, fill, channel=channel, talker=talker, kind=kind)


def multipart(data: dict[str, Any] | tuple[str, int], parts: int, *, seq: str = "1",
              channel: str = "A") -> list[str]:
    """A message split into ``parts`` fragments (fill bits on the last one only)."""
    payload, fill = encode(data) if isinstance(data, dict) else data
    size = -(-len(payload) // parts)
    chunks = [payload[i * size:(i + 1) * size] for i in range(parts)]
    assert all(chunks), "payload too short for that many parts"
    return [
        sentence(chunk, fill if number == parts else 0, count=parts, number=number, seq=seq,
                 channel=channel)
        for number, chunk in enumerate(chunks, start=1)
    ]


def position(mmsi: int = 244123456, lat: float = 51.9, lon: float = 4.1, **more: Any
             ) -> dict[str, Any]:
    """A type 1 position report as a pyais encoder dict."""
    data: dict[str, Any] = {"type": 1, "mmsi": mmsi, "lat": lat, "lon": lon, "speed": 5.5,
                            "course": 90.0, "heading": 91, "status": 0}
    data.update(more)
    return data


def static(mmsi: int = 244123456, **more: Any) -> dict[str, Any]:
    """A type 5 static and voyage report as a pyais encoder dict."""
    data: dict[str, Any] = {
        "type": 5, "mmsi": mmsi, "shipname": "HARBOUR TEST", "callsign": "PA1234",
        "imo": 9123456, "ship_type": 70, "to_bow": 50, "to_stern": 20, "to_port": 5,
        "to_starboard": 7, "draught": 5.5, "destination": "ROTTERDAM", "month": 5, "day": 1,
        "hour": 10, "minute": 30,
    }
    data.update(more)
    return data


def base_station(year: int, month: int, day: int, hour: int, minute: int, second: int,
                 mmsi: int = 3669702) -> dict[str, Any]:
    """A type 4 base-station report carrying a UTC time."""
    return {"type": 4, "mmsi": mmsi, "year": year, "month": month, "day": day, "hour": hour,
            "minute": minute, "second": second, "lat": -23.8, "lon": 151.2}


def feed_all(ingestor: Ingestor, source: str, lines: Iterable[str | bytes],
             received: float | None = None, *, flush: bool = False) -> list[Report]:
    """Feed lines (str or bytes) and collect every report, optionally flushing at the end."""
    out: list[Report] = []
    for line in lines:
        data = line.encode() if isinstance(line, str) else line
        out.extend(ingestor.feed(source, data, received))
    if flush:
        out.extend(ingestor.flush())
    return out


def balanced(ingestor: Ingestor, sources: Sequence[str] | None = None) -> None:
    """Assert the counting invariant: every line is a sentence, a meta line or a rejection."""
    for name in sources if sources is not None else list(ingestor.sources):
        health = ingestor.health(name)
        assert health.lines == health.sentences + health.meta + sum(health.rejected.values()), (
            health.to_dict())
