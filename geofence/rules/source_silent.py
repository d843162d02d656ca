"""``source_silent``: a receiver has sent nothing for more than its ``silent_s``.

Each receiver's limit is its own in ``receiver_silent_s``, else the rule's ``silent_s``
(``Receiver.silent_s``): a remote station that hears a few vessels, or a satellite feed, is
quiet for minutes as a matter of course and alerted all day at 120 s.

Receivers are the tag-block stations or the sources themselves (``Report.sources``). The
alert starts ``silent_s`` after the receiver was last heard on the port's clock (the newest
message time at that line: ``Receiver.heard_at``), so its start and id are the same live and
replayed, however lines were batched and whenever ticks came. The alert ends when the
receiver is heard again (noticed on the next tick; ``ended_at`` is the time it was heard).
A silence is also judged just before a receiver is heard again (``before_heard``, at the
engine's clock then): a replay, whose ticks come only with lines, then alerts for every
receiver of a quiet period as live does, not only for those heard after the first line.
``dark_vessel`` needs no message from this rule: a silence longer than ``silent_s`` breaks
the receiver's continuity (:class:`~geofence.picture.Receiver`), so vessels only it heard
cannot be called dark.
Only receivers matching one of the ``receivers`` patterns, and none of its ``!`` patterns,
alert (``["*", "!316000002"]``: all but a satellite station, whose passes come and go).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from geofence.alert import RiskArea, Severity, alert_id
from geofence.rules.base import BaseRule, RuleContext
from ingest.report import iso_time

if TYPE_CHECKING:
    from geofence.picture import Receiver
    from harbourwatch.config import RulesConfig


#: Alert times are stored and restored to the millisecond (ISO 8601).
STORED_TIME_RESOLUTION_S = 0.001


class SourceSilent(BaseRule):
    name = "source_silent"

    def __init__(self, config: RulesConfig) -> None:
        patterns = config.source_silent.receivers
        # Exclusions alone mean "all but these".
        self.patterns = [p for p in patterns if not p.startswith("!")] or ["*"]
        self.excluded = [p[1:] for p in patterns if p.startswith("!")]
        self._watched: dict[str, bool] = {}

    def watches(self, receiver: str) -> bool:
        """Whether ``receiver`` matches a pattern (answers cached: ticks ask every second)."""
        watched = self._watched.get(receiver)
        if watched is None:
            watched = self._watched[receiver] = any(
                fnmatchcase(receiver, pattern) for pattern in self.patterns) and not any(
                fnmatchcase(receiver, pattern) for pattern in self.excluded)
        return watched

    def on_tick(self, ctx: RuleContext, now: float) -> None:
        active = {str(a.details.get("receiver")): a for a in ctx.book.of_rule(self.name)}
        for rec in ctx.picture.receivers.values():
            alert = active.get(rec.name)
            heard = rec.heard_at
            if alert is not None:
                # Heard again. An alert restored from the store has its start in
                # milliseconds; a receiver timed by arrival is heard in microseconds.
                if heard > alert.started_at - rec.silent_s + STORED_TIME_RESOLUTION_S:
                    ctx.book.end(alert, now, {"silent_s": round(
                        heard - alert.started_at + rec.silent_s, 1)}, ended_at=heard)
                continue
            self._open_if_silent(ctx, rec, now)

    def before_heard(self, ctx: RuleContext, rec: Receiver, now: float) -> None:
        """``rec`` is about to be heard with the engine's clock at ``now``: if it has been
        silent for more than its ``silent_s`` by then, its alert opens now (the next tick ends
        it at the time it was heard).

        Live, the wall clock's ticks notice the silence while it lasts; replayed, the first
        tick after it may come only at the line that ends it, and a receiver already heard
        in that line looked just heard (two receivers quiet together: only the second one
        alerted). Judged here, before the line's receivers are recorded, both do, with the
        same start and id as live.
        """
        if now > max(rec.heard_live, rec.silence_from) + rec.silent_s:
            # Only after a silence (rare): the book is searched only then.
            for alert in ctx.book.of_rule(self.name):
                if alert.details.get("receiver") == rec.name:
                    return
            self._open_if_silent(ctx, rec, now)

    def _open_if_silent(self, ctx: RuleContext, rec: Receiver, now: float) -> None:
        heard = rec.heard_at
        # Dated by message time alone (the start and the id do not depend on when ticks
        # come), judged by the engine's clock (live, it moves on with the wall clock).
        due = max(heard, rec.silence_from) + rec.silent_s
        if now > max(rec.heard_live, rec.silence_from) + rec.silent_s and self.watches(
                rec.name):
            ctx.book.open(
                self.name, risk_area=RiskArea.INFORMATION_SECURITY,
                severity=Severity.WARNING, mmsi=None, started_at=due, time=now,
                alert_id=alert_id(self.name, None, None, f"receiver:{rec.name}", due,
                                  ctx.book.drill),
                details={"receiver": rec.name, "last_heard": iso_time(rec.last_heard),
                         "silent_s": rec.silent_s})
