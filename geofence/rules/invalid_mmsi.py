"""``invalid_mmsi``: an MMSI that no ship station may carry (ITU MID table, :mod:`geofence.mid`).

Flagged: more than nine digits, a MID that is not allocated, a group-call number, and a
coast-station or AtoN number (00…, 99…) sending ship reports (types 1-3, 5, 18, 19, 24, 27):
a 7-digit "MMSI" on a vessel is read as 00MIDxxxx and must not pass as a station. Classified
and not flagged: ship MMSIs, coast/base stations (00…), aids to navigation (99…), SAR aircraft
(111…), craft of a parent ship (98…), handhelds (8…), and the emergency devices 970/972/974
(``emergency_device`` handles those). One event per MMSI, not one per report: the vessel's
``rule_state`` remembers it was flagged (and survives a restart with the vessel). Judged
from an MMSI's second message: a message garbled on a noisy channel that still passes its
checksum carries a random MMSI (often 10 digits) nobody sends twice; a real misconfigured
transponder repeats. A placeholder (:func:`~geofence.mid.is_placeholder`: 111111111,
123456789, …) is said so in ``details.placeholder: true``.

Station messages (base stations 4, 20-23, AtoN 21, and 11, 16, 17: ``NON_VESSEL_TYPES``)
make no vessel; the engine hands them to :meth:`InvalidMmsi.on_station`, which flags the
numbers no station may carry in the same way. A valid number of another kind is not flagged
there: ITU-R M.585 numbers base stations 00MIDxxxx and AtoN 99MIDxxxx, but real ones often
are not (the demo log's base stations 553111486-489, its AtoN 503001110-115).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geofence.alert import RiskArea, Severity
from geofence.mid import classify, is_placeholder, is_ship_mmsi, mmsi_text
from geofence.picture import Vessel
from geofence.rules.base import BaseRule, RuleContext, evidence, vessel_fields
from ingest.report import Report

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig


#: Only ship stations send these; a station or AtoN number on them is misconfigured or false.
SHIP_REPORT_TYPES = frozenset({1, 2, 3, 5, 18, 19, 24, 27})
STATION_KINDS = frozenset({"coast", "aton"})
#: What a station message says its sender is (``details.station``); others: ``station``.
STATION_OF_TYPE = {4: "base_station", 21: "aton"}
#: Station numbers remembered (messages heard, or flagged): a feed open to injection can
#: send any number of them.
MAX_STATIONS = 10_000
_FLAGGED = -1


class InvalidMmsi(BaseRule):
    name = "invalid_mmsi"
    non_ship_only = True

    def __init__(self, config: RulesConfig) -> None:
        self.config = config.invalid_mmsi
        #: Invalid numbers heard on station messages: how often, or ``_FLAGGED``.
        self._stations: dict[int, int] = {}

    def on_report(self, ctx: RuleContext, vessel: Vessel, report: Report) -> None:
        mmsi = vessel.mmsi
        if is_ship_mmsi(mmsi) or self.name in vessel.rule_state or vessel.messages < 2:
            return
        if self._stations.get(mmsi) == _FLAGGED:  # flagged on its station messages
            kind = classify(mmsi)
            vessel.rule_state[self.name] = {"kind": kind.kind, "reason": kind.reason}
            return
        kind = classify(mmsi)
        reason = kind.reason
        if kind.valid:
            if kind.kind not in STATION_KINDS or report.msg_type not in SHIP_REPORT_TYPES:
                vessel.rule_state[self.name] = {"kind": kind.kind}
                return
            reason = f"{kind.kind}_mmsi_on_ship_report"
        vessel.rule_state[self.name] = {"kind": kind.kind, "reason": reason}
        details = {"mmsi_text": mmsi_text(mmsi) if mmsi <= 999_999_999 else str(mmsi),
                   "reason": reason, "mid": kind.mid, "country": kind.country,
                   "reports": [evidence(report)]}
        where = vessel_fields(vessel)
        if is_placeholder(mmsi):
            # Shared by unrelated transponders: the operator reads this alert as "some
            # device left unset", and position_jump and mmsi_conflict stay silent on it.
            details["placeholder"] = True
            if report.lat is not None and report.lon is not None:
                # That device is where its report is: the picture keeps the place of the
                # first one heard with the number, possibly far away.
                where.update(lat=report.lat, lon=report.lon)
        ctx.book.event(
            self.name, risk_area=RiskArea.INFORMATION_SECURITY, severity=Severity.WARNING,
            mmsi=mmsi, time=report.time, **where, details=details)

    def on_station(self, ctx: RuleContext, report: Report) -> None:
        """A station message (the engine's ``NON_VESSEL_TYPES``): flag a number no station
        may carry (unallocated MID, not nine digits, a group number), from its second
        message, once; never a valid number of another kind (see the module docstring)."""
        mmsi = report.mmsi
        if is_ship_mmsi(mmsi):
            return
        heard = self._stations.get(mmsi, 0)
        if heard == _FLAGGED:
            return
        kind = classify(mmsi)
        if kind.valid:
            return
        vessel = ctx.picture.vessels.get(mmsi)
        if vessel is not None and self.name in vessel.rule_state:
            self._keep(mmsi, _FLAGGED)  # flagged on its other messages already
            return
        if heard + 1 + (vessel.messages if vessel is not None else 0) < 2:
            self._keep(mmsi, heard + 1)
            return
        self._keep(mmsi, _FLAGGED)
        details = {"mmsi_text": mmsi_text(mmsi) if mmsi <= 999_999_999 else str(mmsi),
                   "reason": kind.reason, "mid": kind.mid, "country": kind.country,
                   "station": STATION_OF_TYPE.get(report.msg_type, "station"),
                   "reports": [evidence(report)]}
        if is_placeholder(mmsi):
            details["placeholder"] = True
        ctx.book.event(
            self.name, risk_area=RiskArea.INFORMATION_SECURITY, severity=Severity.WARNING,
            mmsi=mmsi, time=report.time, shipname=report.shipname, lat=report.lat,
            lon=report.lon, details=details)

    def _keep(self, mmsi: int, heard: int) -> None:
        stations = self._stations
        stations.pop(mmsi, None)
        stations[mmsi] = heard
        if len(stations) > MAX_STATIONS:
            del stations[next(iter(stations))]  # the least recently heard

    def saved_state(self) -> Any:
        """The station numbers flagged: a restart must not flag them again (None: none)."""
        return [mmsi for mmsi, heard in self._stations.items() if heard == _FLAGGED] or None

    def load_state(self, ctx: RuleContext, state: Any) -> None:
        for mmsi in state:
            self._keep(int(mmsi), _FLAGGED)
