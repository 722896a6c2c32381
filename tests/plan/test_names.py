"""App names are DNS labels."""

import pytest

from dockyard.plan.errors import InvalidAppName
from dockyard.plan.names import validate_app_name


@pytest.mark.parametrize("name", ["a", "shop", "my-app-2", "0", "a" * 63])
def test_valid_names(name: str) -> None:
    assert validate_app_name(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "must not be empty"),
        ("a" * 64, "is 64 characters long (at most 63)"),
        ("Shop", "must be lowercase (try 'shop')"),
        ("-shop", "must not start or end with a hyphen"),
        ("shop-", "must not start or end with a hyphen"),
        ("my_app", "may hold only a-z, 0-9 and '-' (found '_')"),
        ("my.app", "may hold only a-z, 0-9 and '-' (found '.')"),
        ("café", "may hold only a-z, 0-9 and '-' (found 'é')"),
    ],
)
def test_invalid_names(name: str, problem: str) -> None:
    with pytest.raises(InvalidAppName) as info:
        validate_app_name(name)
    assert info.value.problem == problem
    assert info.value.name == name
