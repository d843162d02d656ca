"""Real services started by the tests themselves (PostgreSQL, Mosquitto)."""
