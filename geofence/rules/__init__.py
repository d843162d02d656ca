"""The rule registry: ``(name, factory)`` in run order within each phase.

A later rule set plugs in by appending to :data:`REGISTRY` (validation rules such as
``position_jump`` declare ``phase = Phase.VALIDATE`` and run before the picture is updated,
whatever their place in the list). A rule is built only when its config section is
enabled (``RulesConfig.rule_enabled``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geofence.rules.anchor_drag import AnchorDrag
from geofence.rules.base import BaseRule, Phase, Rule, RuleContext, RuleFactory, evidence
from geofence.rules.collision_risk import CollisionRisk
from geofence.rules.dark import DarkVessel
from geofence.rules.emergency import EmergencyDevice
from geofence.rules.encounter import Encounter
from geofence.rules.identity_change import IdentityChange
from geofence.rules.invalid_mmsi import InvalidMmsi
from geofence.rules.loitering import Loitering
from geofence.rules.mmsi_conflict import MmsiConflict
from geofence.rules.position_jump import PositionJump
from geofence.rules.restricted import RestrictedEntry
from geofence.rules.source_silent import SourceSilent
from geofence.rules.speeding import Speeding
from geofence.rules.sudden_stop import SuddenStop
from geofence.rules.zone_events import ZoneEntry, ZoneExit

if TYPE_CHECKING:
    from harbourwatch.config import RulesConfig

__all__ = ["REGISTRY", "BaseRule", "Phase", "Rule", "RuleContext", "RuleFactory",
           "build_rules", "evidence"]

REGISTRY: list[tuple[str, RuleFactory]] = [
    ("source_silent", SourceSilent),
    ("zone_entry", ZoneEntry),
    ("zone_exit", ZoneExit),
    ("restricted_entry", RestrictedEntry),
    ("dark_vessel", DarkVessel),
    ("loitering", Loitering),
    ("speeding", Speeding),
    ("emergency_device", EmergencyDevice),
    # track integrity: VALIDATE phase, position_jump before mmsi_conflict
    ("position_jump", PositionJump),
    ("mmsi_conflict", MmsiConflict),
    ("invalid_mmsi", InvalidMmsi),
    ("identity_change", IdentityChange),
    # traffic safety
    ("encounter", Encounter),
    ("collision_risk", CollisionRisk),
    ("anchor_drag", AnchorDrag),
    ("sudden_stop", SuddenStop),
]


def build_rules(config: RulesConfig) -> list[Rule]:
    """Enabled rules, validation phase first, registry order kept within a phase."""
    rules = [factory(config) for name, factory in REGISTRY if config.rule_enabled(name)]
    return sorted(rules, key=lambda rule: rule.phase)
