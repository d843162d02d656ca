"""Operators' acts on an alert held in memory while the database is away.

An act is judged against the alert as the running rules hold it (open, acknowledged, or
resolved while its condition holds), exactly as the store would judge it (409 for an act
made already); an alert memory does not hold (ended, or never raised) cannot be judged
and is refused with 503, never taken for unknown. The act is laid over the alert at once
and queued for the store with the operator's name and wall time (``store.base.QueuedAct``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from harbourwatch.timeutil import iso_time, parse_iso
from store.base import Conflict
from store.rows import ACT_NAMES, act_refused, merge_state


def act_in_memory(found: Mapping[str, Any], action: str, actor: str,
                  note: str | None) -> tuple[dict[str, Any], float]:
    """The alert after ``action`` ("ack", "resolve") by ``actor`` now, and the wall time of
    the act; :class:`Conflict` when it was made already."""
    refused = act_refused(str(found["id"]), action, found["acknowledged_by"],
                          _time(found["acknowledged_at"]), found["resolved_by"],
                          _time(found["resolved_at"]))
    if refused is not None:
        raise Conflict(refused)
    at = time.time()
    names = ACT_NAMES[action]
    out = {**found, "state": merge_state(str(found["state"]), names.state),
           "updated_at": iso_time(at), f"{names.field}_at": iso_time(at),
           f"{names.field}_by": actor, names.note: note}
    return out, at


def act_audit(before: Mapping[str, Any], after: Mapping[str, Any],
              action: str, message_at: float | None) -> dict[str, Any]:
    """The audit entry the store will keep for the act (``AuditEntry``); ``message_at``:
    the rules' clock when it was made."""
    names = ACT_NAMES[action]
    return {"alert_id": after["id"], "time": after[f"{names.field}_at"],
            "message_time": None if message_at is None else iso_time(message_at),
            "actor": after[f"{names.field}_by"], "action": action, "note": after[names.note],
            "before": before["state"], "after": after["state"]}


def _time(value: str | None) -> float | None:
    return None if value is None else parse_iso(value)
