"""Recorded-log playback on message time, drills, and synthetic scenarios."""
