"""Reading the two files ``harbourwatch score`` compares: a scenario's truth and a replay's
alerts (``--alerts-out``, one JSON object a line).

Each is read on its own and checked for what scoring needs, so a bad file is a message that
names it and the line (``alerts.jsonl:7: started_at: not an ISO 8601 time: 'garbage'``),
never a traceback or a key error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harbourwatch.timeutil import parse_iso
from replay.scenario.truth import Truth

#: What a truth file has at its top level (``Truth.to_dict``).
TRUTH_KEYS = ("seed", "start", "end", "zones", "rules", "receivers", "anomalies", "controls")
#: At most this many faults of one file are listed.
MAX_ERRORS = 10


class ScoreInputError(ValueError):
    """A file ``score`` cannot use; ``errors`` are ``FILE[:LINE]: reason`` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ScoreInputError([f"{path}:{line}: not UTF-8 text (byte {exc.start})"]) from exc
    except OSError as exc:
        raise ScoreInputError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc


def _json(path: Path, text: str, line_offset: int = 0) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScoreInputError([f"{path}:{exc.lineno + line_offset}: not JSON: {exc.msg} "
                               f"(column {exc.colno})"]) from exc


def _time_fault(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected an ISO 8601 time, got {json.dumps(value)}"
    try:
        parse_iso(value)
    except ValueError:
        return f"not an ISO 8601 time: {value!r}"
    return None


def _mmsi_fault(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    return f"{key}: expected a number or null, got {json.dumps(value)}"


def _expectation_faults(item: Any, where: str) -> list[str]:
    if not isinstance(item, dict):
        return [f"{where}: expected an object, got {json.dumps(item)[:40]}"]
    out = []
    if not isinstance(item.get("rule"), str):
        out.append(f"{where}.rule: missing or not text")
    out += [f"{where}.{fault}" for key in ("mmsi", "other_mmsi")
            if (fault := _mmsi_fault(item, key))]
    window = item.get("window")
    if window is not None:
        if not (isinstance(window, list) and len(window) == 2):
            out.append(f"{where}.window: expected [start, end]")
        else:
            out += [f"{where}.window[{i}]: {fault}" for i, value in enumerate(window)
                    if (fault := _time_fault(value))]
    return out


def load_truth(path: Path) -> Truth:
    """The truth file ``scenario`` wrote, checked; :class:`ScoreInputError` when it is not."""
    text = _text(path)
    if not text.strip():
        raise ScoreInputError([f"{path}: empty file (expected the truth file `scenario` "
                               "wrote)"])
    data = _json(path, text)
    if not isinstance(data, dict):
        raise ScoreInputError([f"{path}: not a scenario truth file (a JSON object)"])
    missing = [key for key in TRUTH_KEYS if key not in data]
    if missing:
        hint = " (a zones file?)" if data.get("type") == "FeatureCollection" else ""
        raise ScoreInputError([f"{path}: not a scenario truth file{hint}: no "
                               + ", ".join(missing)])
    faults = [f"{key}: {fault}" for key in ("start", "end")
              if (fault := _time_fault(data[key]))]
    for key in ("anomalies", "controls", "side_effects"):
        items = data.get(key, [])
        if not isinstance(items, list):
            faults.append(f"{key}: expected a list")
            continue
        for i, item in enumerate(items):
            faults += _expectation_faults(item, f"{key}[{i}]")
    for key in ("rules", "receivers"):
        if not isinstance(data[key], list):
            faults.append(f"{key}: expected a list")
    if not isinstance(data.get("skipped", {}), dict):
        faults.append("skipped: expected an object")
    if faults:
        raise ScoreInputError(_capped([f"{path}: {fault}" for fault in faults]))
    return Truth.from_dict(data)


def _alert_faults(alert: Any) -> list[str]:
    if not isinstance(alert, dict):
        return [f"not an alert (a JSON object), got {json.dumps(alert)[:40]}"]
    out = [f"{key}: missing or not text" for key in ("id", "rule")
           if not isinstance(alert.get(key), str) or not alert[key]]
    if "started_at" not in alert:
        out.append("started_at: missing")
    elif fault := _time_fault(alert["started_at"]):
        out.append(f"started_at: {fault}")
    out += [fault for key in ("mmsi", "other_mmsi") if (fault := _mmsi_fault(alert, key))]
    if not isinstance(alert.get("details", {}), dict):
        out.append("details: expected an object")
    return out


def load_alerts(path: Path) -> list[dict[str, Any]]:
    """The alert lines of an ``--alerts-out`` file, checked; blank lines are skipped."""
    alerts: list[dict[str, Any]] = []
    faults: list[str] = []
    for n, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            alert = _json(path, line, n - 1)
        except ScoreInputError as exc:
            faults += exc.errors
            continue
        if isinstance(alert, dict) and "act" in alert:
            continue  # an operator's act in a drill's file (see harbourwatch.alerts_file)
        found = _alert_faults(alert)
        faults += [f"{path}:{n}: {fault}" for fault in found]
        if not found:
            alerts.append(alert)
    if faults:
        raise ScoreInputError(_capped(faults))
    return alerts


def _capped(faults: list[str]) -> list[str]:
    if len(faults) <= MAX_ERRORS:
        return faults
    return [*faults[:MAX_ERRORS], f"… and {len(faults) - MAX_ERRORS} more"]
