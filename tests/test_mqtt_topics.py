"""Topic building: namespacing and sanitising of user-named levels."""

from __future__ import annotations

import pytest

from api.mqtt_topics import Topics, default_prefix, sanitise_level, validate_prefix


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("berth_3", "berth_3"),
        ("a/b", "a_b"),
        ("+", "_"),
        ("#", "_"),
        ("x+y#z", "x_y_z"),
        ("", "_"),
        ("  ", "_"),
        ("$SYS", "_SYS"),
        ("rx north", "rx_north"),
        ("nul\x00", "nul_"),
        ("Åland", "Åland"),
    ],
)
def test_sanitise_level(name: str, level: str) -> None:
    assert sanitise_level(name) == level


def test_sanitise_level_is_bounded() -> None:
    assert sanitise_level("x" * 1000) == "x" * 128


def test_default_prefix_sanitises_port_name() -> None:
    assert default_prefix("rotterdam") == "harbourwatch/rotterdam"
    assert default_prefix("my/port #1") == "harbourwatch/my_port__1"


@pytest.mark.parametrize("prefix", ["", "/", "a//b", "a/+/b", "a/#", "$SYS/x", "a b"])
def test_bad_prefix_rejected(prefix: str) -> None:
    with pytest.raises(ValueError):
        validate_prefix(prefix)


def test_prefix_outer_slashes_stripped() -> None:
    assert validate_prefix("/ops/harbour/") == "ops/harbour"


def test_topic_tree() -> None:
    t = Topics.for_prefix("harbourwatch/demo")
    assert t.available == "harbourwatch/demo/available"
    assert t.alerts == "harbourwatch/demo/alerts"
    assert t.alert("dark_vessel", "abc123") == "harbourwatch/demo/alerts/dark_vessel/abc123"
    assert t.alert("a/b", "#") == "harbourwatch/demo/alerts/a_b/_"
    assert t.vessel(244123456) == "harbourwatch/demo/vessels/244123456"
    assert t.source_status("available") == "harbourwatch/demo/sources/available/status"
    assert t.source_status("rx/+") == "harbourwatch/demo/sources/rx__/status"
    assert t.stats == "harbourwatch/demo/stats"


def test_drill_branch() -> None:
    t = Topics.for_prefix("harbourwatch/demo", drill=True)
    assert t.root == "harbourwatch/demo/drill"
    assert t.alerts == "harbourwatch/demo/drill/alerts"
    assert t.vessel(1) == "harbourwatch/demo/drill/vessels/1"


def test_replay_branch() -> None:
    """A plain replay's own branch; a drill replay is a drill."""
    t = Topics.for_prefix("harbourwatch/demo", replay=True)
    assert (t.root, t.available) == ("harbourwatch/demo/replay",
                                     "harbourwatch/demo/replay/available")
    assert Topics.for_prefix("harbourwatch/demo", drill=True, replay=True).root == (
        "harbourwatch/demo/drill")
