"""Durations and memory sizes as manifests write them."""

import pytest

from dockyard.plan.durations import parse_duration, parse_memory


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0), ("20m", 1200.0), ("1h", 3600.0), ("1h30m", 5400.0), ("1h 30m", 5400.0),
        ("1m30s", 90.0), ("500ms", 0.5), ("1.5h", 5400.0), ("45", 45.0), (" 2m ", 120.0),
        (90, 90.0), (2.5, 2.5),
    ],
)
def test_durations(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["ten minutes", "", "m", "10x", "-5s", "1h-30m", "10 minutes"])
def test_not_durations(value: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as info:
        parse_duration(value)
    assert str(info.value).startswith(f'"{value}" is not a duration (use e.g. "90s", "20m"')


@pytest.mark.parametrize("value", [0, -1, "0s", "0", 0.0, float("inf")])
def test_zero_negative_and_infinite_durations_are_refused(value: str | float) -> None:
    with pytest.raises(ValueError, match="is not a positive duration"):
        parse_duration(value)


def test_zero_is_allowed_when_asked() -> None:
    assert parse_duration("0s", allow_zero=True) == 0.0
    with pytest.raises(ValueError):
        parse_duration(-1, allow_zero=True)


def test_bool_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="True is not a duration"):
        parse_duration(True)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("512M", 512 * 1024**2), ("512m", 512 * 1024**2), ("256MiB", 256 * 1024**2),
        ("512MB", 512 * 1024**2), ("1G", 1024**3), ("1.5g", 1536 * 1024**2), ("1 GiB", 1024**3),
        ("8192K", 8 * 1024**2), (64 * 1024**2, 64 * 1024**2), (str(10 * 1024**2), 10 * 1024**2),
    ],
)
def test_memory(value: str | int, size: int) -> None:
    assert parse_memory(value) == size


@pytest.mark.parametrize("value", ["lots", "", "512X", "M", "-1G"])
def test_not_memory(value: str) -> None:
    with pytest.raises(ValueError, match=f'"{value}" is not a memory size'):
        parse_memory(value)


def test_memory_must_be_positive() -> None:
    with pytest.raises(ValueError, match="0 is not a positive memory size"):
        parse_memory(0)


def test_memory_below_docker_minimum_suggests_mebibytes() -> None:
    with pytest.raises(ValueError) as info:
        parse_memory(512)
    assert str(info.value) == '512 is 512 bytes, below the 6 MiB minimum (did you mean "512M"?)'
    with pytest.raises(ValueError, match=r"below the 6 MiB minimum$"):
        parse_memory("5K")
