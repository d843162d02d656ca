"""A drill replay's exercise: resumed with ``--start`` where it was cut, or begun afresh.

A drill saves its rules' state apart from the live service's and plain replays' (scope
"drill"), with the logs it plays, so ``--drill --start T`` after a drill stopped at T goes on
as if never cut: dwell times, zone memberships, open alerts (it started from a clean slate:
loitering was missed and every vessel in a zone "entered" it again). A drill from the
beginning is a new exercise, and so is one whose ``--start`` cannot resume the saved state
(other logs, or a state later than ``--start``): the last exercise's state is replaced and its
unsent MQTT alerts are dropped (they went out as the new exercise's first messages).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harbourwatch.timeutil import iso_time

#: The saved-state part naming the exercise: its logs and the message time it was saved at.
PART = "exercise"


def exercise_of(logs: list[str]) -> dict[str, Any]:
    """What identifies a drill's exercise: its logs, by absolute path (stdin as ``-``)."""
    return {"logs": [log if log == "-" else str(Path(log).resolve()) for log in logs]}


def why_new(saved: Mapping[str, Any], exercise: Mapping[str, Any],
            start: float | None) -> str | None:
    """``None`` when a drill resumes the exercise of the saved state ``saved``; otherwise why
    it is a new one, for the log ("" when it plays from the beginning)."""
    if start is None:
        return ""
    kept = saved.get(PART)
    if isinstance(kept, Exception):  # not JSON (see ``Store.load_engine_state``)
        return f"the drill saved in this database cannot be read ({kept})"
    if not isinstance(kept, Mapping) or "logs" not in kept:
        return "no drill is saved in this database to resume"
    if list(kept["logs"]) != list(exercise["logs"]):
        return (f"the drill saved in this database played other logs "
                f"({', '.join(map(str, kept['logs']))})")
    as_of = float(kept.get("as_of", 0.0))
    if as_of > start:
        return (f"the drill saved in this database went on to {iso_time(as_of)}, after "
                f"--start {iso_time(start)}")
    return None
