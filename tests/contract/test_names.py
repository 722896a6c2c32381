"""App names are DNS labels; deployment ids are 32 lowercase hex digits."""

import pytest

from dockyard.contract.events import new_id
from dockyard.contract.names import (
    InvalidAppName,
    InvalidDeploymentId,
    InvalidName,
    check_app,
    check_deployment_id,
)


@pytest.mark.parametrize("name", ["a", "shop", "my-app-2", "0", "a" * 63])
def test_valid_names(name: str) -> None:
    assert check_app(name) == name


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
        # A trailing newline passes a `$`-anchored regex; fullmatch refuses it.
        ("shop\n", "may hold only a-z, 0-9 and '-' (found '\\n')"),
        ("x>", "may hold only a-z, 0-9 and '-' (found '>')"),
        ("*", "may hold only a-z, 0-9 and '-' (found '*')"),
        ("../../etc", "may hold only a-z, 0-9 and '-' (found '.' '/')"),
    ],
)
def test_invalid_names(name: str, problem: str) -> None:
    with pytest.raises(InvalidAppName) as info:
        check_app(name)
    assert info.value.problem == problem
    assert info.value.name == name


def test_invalid_app_name_names_the_name() -> None:
    assert (str(InvalidAppName("A", "must be lowercase"))
            == "invalid app name 'A': must be lowercase")
    assert isinstance(InvalidAppName("A", "x"), InvalidName)


def test_deployment_ids_are_what_new_id_makes() -> None:
    dep = new_id()
    assert check_deployment_id(dep) == dep


@pytest.mark.parametrize("value", ["", "d1", "A" * 32, "0" * 31, "0" * 33, "g" * 32,
                                   "01234567-89ab-cdef-0123-456789abcdef", "0" * 32 + "\n",
                                   "x>", "../../etc", "*", "0" * 31 + ">"])
def test_other_deployment_ids_are_refused(value: str) -> None:
    with pytest.raises(InvalidDeploymentId, match="32 lowercase hex digits"):
        check_deployment_id(value)
