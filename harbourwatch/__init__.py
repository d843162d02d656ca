"""harbourwatch: AIS vessel tracking and port-security alerts. Wiring: config, CLI, pipeline."""

__version__ = "0.1.0"
