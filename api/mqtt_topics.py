"""MQTT topic names of the command-platform feed (pure functions, no I/O).

Fixed levels (``available``, ``alerts``, ``vessels``, ``sources``, ``stats``, ``drill``,
``replay``) are ours; every level that comes from a user or from data (port name, rule,
alert id, source name) sits under one of them, so a source called ``available`` cannot
shadow a fixed topic, and is sanitised so it is exactly one level: no wildcard (``+``,
``#``), no ``/``, no NUL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Longest level we emit; MQTT allows 65535 bytes per topic, consumers rarely expect that.
MAX_LEVEL_LEN = 128

_UNSAFE = re.compile(r"[+#/\x00-\x1f\x7f\s]")


def sanitise_level(name: str) -> str:
    """One safe topic level: wildcards, separators, control chars and spaces become ``_``."""
    level = _UNSAFE.sub("_", name.strip())[:MAX_LEVEL_LEN]
    if not level:
        return "_"
    if level.startswith("$"):
        # ``$``-topics are the broker's own ($SYS); never start a level of ours with one.
        level = "_" + level[1:]
    return level


def validate_prefix(prefix: str) -> str:
    """Check a configured prefix (may span levels); return it without outer slashes.

    Raises ``ValueError`` naming the problem: a prefix is configuration, silently
    rewriting it would publish where nobody subscribes.
    """
    text = prefix.strip().strip("/")
    if not text:
        raise ValueError("MQTT topic prefix is empty")
    if text.startswith("$"):
        raise ValueError(f"MQTT topic prefix {prefix!r} starts with '$' (reserved for brokers)")
    for level in text.split("/"):
        if not level:
            raise ValueError(f"MQTT topic prefix {prefix!r} has an empty level")
        if _UNSAFE.search(level):
            raise ValueError(
                f"MQTT topic prefix {prefix!r}: level {level!r} contains a wildcard, "
                "a control character or a space"
            )
    return text


def default_prefix(port_name: str) -> str:
    """``harbourwatch/<port>``, the port name sanitised into one level."""
    return f"harbourwatch/{sanitise_level(port_name)}"


@dataclass(frozen=True, slots=True)
class Topics:
    """All topic names under one root (``<prefix>``, ``<prefix>/drill`` or
    ``<prefix>/replay``)."""

    root: str

    @classmethod
    def for_prefix(cls, prefix: str, *, drill: bool = False, replay: bool = False) -> Topics:
        """``drill``: the drill branch; else ``replay``: a plain replay's branch, so that a
        replay with the port's own config never speaks on the live service's topics."""
        base = validate_prefix(prefix)
        return cls(f"{base}/drill" if drill else f"{base}/replay" if replay else base)

    @property
    def available(self) -> str:
        return f"{self.root}/available"

    @property
    def alerts(self) -> str:
        return f"{self.root}/alerts"

    def alert(self, rule: str, alert_id: str) -> str:
        return f"{self.root}/alerts/{sanitise_level(rule)}/{sanitise_level(alert_id)}"

    def vessel(self, mmsi: int) -> str:
        return f"{self.root}/vessels/{int(mmsi)}"

    def source_status(self, source: str) -> str:
        return f"{self.root}/sources/{sanitise_level(source)}/status"

    @property
    def stats(self) -> str:
        return f"{self.root}/stats"
