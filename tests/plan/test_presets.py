"""Framework presets expand to labelled commands per phase."""

import pytest

from dockyard.contract.phase import HOOK_PHASES
from dockyard.plan.presets import PRESETS, preset_hooks


def test_known_presets() -> None:
    assert sorted(PRESETS) == ["craft", "django", "laravel", "rails", "symfony"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_command_is_labelled_and_in_a_hook_phase(name: str) -> None:
    for phase, hooks in preset_hooks(name).items():
        assert phase in HOOK_PHASES
        assert hooks
        for hook in hooks:
            assert hook.label and hook.command and hook.source == f"preset:{name}"


def test_laravel() -> None:
    hooks = preset_hooks("laravel")
    assert [h.command for h in hooks["release"]] == ["php artisan migrate --force"]
    assert [h.command for h in hooks["postdeploy"]] == [
        "php artisan config:cache", "php artisan route:cache", "php artisan view:cache",
    ]


def test_craft_release_order() -> None:
    assert [h.command for h in preset_hooks("craft")["release"]] == [
        "php craft migrate/all --interactive=0", "php craft project-config/apply",
    ]


def test_django_collects_static_files_in_predeploy() -> None:
    hooks = preset_hooks("django")
    assert [h.command for h in hooks["predeploy"]] == ["python manage.py collectstatic --noinput"]
    assert [h.command for h in hooks["release"]] == ["python manage.py migrate --noinput"]
    assert "postdeploy" not in hooks


def test_unknown_preset_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        preset_hooks("wordpress")
