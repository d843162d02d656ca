"""Serial port (a receiver on RS-232/RS-422 or USB), with pyserial-asyncio-fast.

A USB receiver that is unplugged makes reads fail; its device node disappears and comes back
(often under a stable ``/dev/serial/by-id/...`` link, which is what to configure). The source
then polls for the device with back-off and carries on when it is back.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import serial_asyncio_fast

from ingest.sources.backoff import BackoffPolicy
from ingest.sources.splitter import DEFAULT_MAX_PENDING
from ingest.sources.stream import StreamSource

DEFAULT_BAUDRATE = 38400
"""AIS receivers talk at 38400 baud (IEC 61162-2); GPS-style 4800 baud units exist."""


class SerialSource(StreamSource):
    """Reads lines from ``device`` at ``baudrate`` (8N1); reopens it when it goes away."""

    def __init__(
        self,
        name: str,
        device: str,
        baudrate: int = DEFAULT_BAUDRATE,
        *,
        backoff: BackoffPolicy | None = None,
        idle_timeout: float | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            name, backoff=backoff, idle_timeout=idle_timeout, max_pending=max_pending, rng=rng
        )
        if baudrate <= 0:
            raise ValueError(f"baud rate must be positive, got {baudrate}")
        self.device = device
        self.baudrate = baudrate

    def _where(self) -> str:
        return f"serial {self.device} at {self.baudrate} baud"

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # pyserial raises SerialException, a subclass of OSError, when the device is missing
        # or fails; the stream loop treats it like any other broken link.
        pair: tuple[Any, Any] = await serial_asyncio_fast.open_serial_connection(
            url=self.device, baudrate=self.baudrate
        )
        reader: asyncio.StreamReader = pair[0]
        writer: asyncio.StreamWriter = pair[1]
        return reader, writer
