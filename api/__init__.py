"""HTTP API, live stream, metrics and the MQTT feed for the command platform."""
