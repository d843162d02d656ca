"""Saved state from a clock that ran ahead: times after the latest believable one.

Before file and stdin lines in ``run`` were timed by arrival, one line stamped a year ahead
went into the saved state unguarded; restored as it was, its vessel and receivers looked
heard for a year. Each time after ``latest`` is taken as ``latest``.
"""

from __future__ import annotations

from geofence.picture import Receiver, Vessel


def clamp_receiver(rec: Receiver, latest: float) -> bool:
    """Clamp the receiver's times to ``latest``; True when any was after it."""
    ahead = False
    for name in ("last_heard", "up_since", "silence_from", "heard_at", "heard_live"):
        if getattr(rec, name) > latest:
            setattr(rec, name, latest)
            ahead = True
    return ahead


def clamp_vessel(vessel: Vessel, latest: float) -> bool:
    """Clamp the vessel's times (seen, fix, static data, receivers, track) to ``latest``;
    True when any was after it."""
    ahead = False
    for name in ("first_seen", "last_seen", "fix_time", "static_time"):
        value = getattr(vessel, name)
        if value is not None and value > latest:
            setattr(vessel, name, latest)
            ahead = True
    for receiver, heard in vessel.sources.items():
        if heard > latest:
            vessel.sources[receiver] = latest
            ahead = True
    if any(fix.time > latest for fix in vessel.history):
        ahead = True
        fixes = [fix._replace(time=min(fix.time, latest)) for fix in vessel.history]
        vessel.history.clear()
        vessel.history.extend(fixes)
    return ahead
