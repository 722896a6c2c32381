"""ManifestError and the other plan errors render their fields."""

from dockyard.plan.errors import HookNotFound, ManifestError, PlanError


def test_manifest_error_with_line() -> None:
    err = ManifestError("dockyard.toml", 7, "release[0].timeout: bad")
    assert str(err) == "dockyard.toml:7: release[0].timeout: bad"
    assert (err.file, err.line, err.problem) == ("dockyard.toml", 7, "release[0].timeout: bad")
    assert isinstance(err, PlanError)


def test_manifest_error_without_line() -> None:
    assert str(ManifestError("app.json", None, "scripts: wrong")) == "app.json: scripts: wrong"


def test_hook_not_found_lists_the_labels_of_the_phase() -> None:
    err = HookNotFound("shop", "postdeploy", "warm", ["a", "b"])
    assert str(err) == ("app 'shop' has no postdeploy hook labelled 'warm'"
                        " (postdeploy hooks: 'a', 'b')")
    assert "hooks: none" in str(HookNotFound("shop", "release", "x", []))
