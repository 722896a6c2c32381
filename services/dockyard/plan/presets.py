"""Framework presets (as fortrabbit's software templates): labelled commands per hook phase."""

from __future__ import annotations

from dockyard.contract.manifest import HookSpec

# preset -> phase -> [(label, command)], in run order.
# Django's collectstatic is a predeploy command: predeploy changes are committed into the image,
# which is where static files must end up (Dokku lists collectstatic as a deployment task).
PRESETS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "laravel": {
        "release": [("Migrate database", "php artisan migrate --force")],
        "postdeploy": [
            ("Cache config", "php artisan config:cache"),
            ("Cache routes", "php artisan route:cache"),
            ("Cache views", "php artisan view:cache"),
        ],
    },
    "symfony": {
        "release": [
            ("Migrate database", "php bin/console doctrine:migrations:migrate --no-interaction"),
        ],
        "postdeploy": [("Clear cache", "php bin/console cache:clear")],
    },
    "craft": {
        "release": [
            ("Migrate database", "php craft migrate/all --interactive=0"),
            ("Apply project config", "php craft project-config/apply"),
        ],
        "postdeploy": [("Clear caches", "php craft clear-caches/all")],
    },
    "django": {
        "predeploy": [("Collect static files", "python manage.py collectstatic --noinput")],
        "release": [("Migrate database", "python manage.py migrate --noinput")],
    },
    "rails": {
        "release": [("Migrate database", "bundle exec rails db:migrate")],
    },
}


def preset_hooks(name: str) -> dict[str, list[HookSpec]]:
    """The hook commands of a known preset, per phase (KeyError for an unknown one)."""
    return {
        phase: [HookSpec(label=label, command=command, source=f"preset:{name}")
                for label, command in commands]
        for phase, commands in PRESETS[name].items()
    }
