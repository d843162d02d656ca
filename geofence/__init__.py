"""Zones, the live vessel picture, the anomaly rules and the alert model."""
