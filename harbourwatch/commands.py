"""Sub-commands beyond ``decode``: run, replay, scenario, check-config (wired as they land)."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(commands: Any) -> None:
    """Register the other sub-commands on the ``argparse`` sub-parser action."""
    _ = (commands, argparse)
