"""Naming a deployment: whole ids, unique prefixes, release numbers; every miss one clear error."""

from __future__ import annotations

import pytest

from dockyard.cli.errors import (
    EXIT_USAGE,
    AmbiguousDeployment,
    NoSuchDeployment,
    PrefixTooShort,
    ReleaseNeedsApp,
)
from dockyard.cli.refs import MIN_PREFIX, release_number, resolve
from dockyard.client import KnownDeployment

A1 = KnownDeployment(id="f3ccf8d37f6f4ffc815af2a0b1c2d3e4", app="shop", release=1,
                     status="succeeded")
A2 = KnownDeployment(id="f3ccf8d3aaaa4ffc815af2a0b1c2d3e4", app="shop", release=2,
                     status="hook-error")
B1 = KnownDeployment(id="0b1c2d3e4f3ccf8d37f6f4ffc815af2a", app="blog", release=1)
KNOWN = [A1, A2, B1]


def test_a_whole_id_names_its_deployment() -> None:
    assert resolve(A2.id, KNOWN) == A2
    assert resolve(A2.id.upper(), KNOWN) == A2, "pasted in capitals"
    assert resolve(f"  {A1.id} ", KNOWN) == A1


def test_a_unique_prefix_names_its_deployment() -> None:
    assert resolve("0b1c", KNOWN) == B1
    assert resolve("f3ccf8d37", KNOWN) == A1


def test_an_ambiguous_prefix_names_every_match() -> None:
    with pytest.raises(AmbiguousDeployment) as caught:
        resolve("f3ccf8d3", KNOWN)
    assert set(caught.value.matches) == {A1.id, A2.id}
    assert str(caught.value).startswith("'f3ccf8d3' matches 2 deployments")
    assert caught.value.code == EXIT_USAGE


def test_an_app_narrows_a_prefix() -> None:
    other = KnownDeployment(id="0b1c" + "0" * 28, app="shop")
    assert resolve("0b1c", [*KNOWN, other], app="blog") == B1
    assert resolve("0b1c", [*KNOWN, other], app="shop") == other
    with pytest.raises(AmbiguousDeployment):
        resolve("f3cc", KNOWN, app="shop")
    with pytest.raises(NoSuchDeployment, match="no deployment of blog matches 'f3ccf8d37'"):
        resolve("f3ccf8d37", KNOWN, app="blog")


def test_nothing_matching_is_one_line_naming_the_reference() -> None:
    with pytest.raises(NoSuchDeployment) as caught:
        resolve("nosuchid", KNOWN)
    assert str(caught.value) == "no deployment matches 'nosuchid'"
    assert caught.value.ref == "nosuchid"
    with pytest.raises(NoSuchDeployment):
        resolve("nosuchid", [])


def test_a_prefix_too_short_is_refused() -> None:
    with pytest.raises(PrefixTooShort, match=f"at least {MIN_PREFIX} characters"):
        resolve("0b1", KNOWN)
    with pytest.raises(PrefixTooShort):
        resolve("", KNOWN)


def test_a_release_number_needs_its_app() -> None:
    assert release_number("v7") == 7 and release_number("V12") == 7 + 5
    assert release_number("7") is None and release_number("v") is None
    assert release_number("vv7") is None
    assert resolve("v2", KNOWN, app="shop") == A2
    assert resolve("v1", KNOWN, app="blog") == B1
    with pytest.raises(ReleaseNeedsApp, match="'v2' is a release number: say whose with --app"):
        resolve("v2", KNOWN)
    with pytest.raises(NoSuchDeployment, match="no deployment of shop matches 'v9'"):
        resolve("v9", KNOWN, app="shop")


def test_logs_reads_a_name_as_an_app_unless_it_can_only_be_a_deployment() -> None:
    from dockyard.cli.refs import may_name_app

    assert may_name_app("shop", None)
    assert may_name_app("7b69", None)  # an app of that name wins over a deployment prefix
    assert not may_name_app("shop", "shop")  # --app: REF is a deployment of it
    assert not may_name_app("v7", None)
    assert not may_name_app("0123456789abcdef0123456789abcdef", None)
    assert not may_name_app("Not_An_App", None)
