"""The merge rule: dockyard.toml > Procfile > app.json > preset per phase, then operator hooks."""

from pathlib import Path

import pytest

from dockyard.contract.manifest import OperatorHook
from dockyard.contract.phase import Phase
from dockyard.contract.plan import DEFAULT_MEMORY, BuildConfig, Command, Health, Plan, ProcessType
from dockyard.plan.errors import InvalidHook, ManifestError
from dockyard.plan.merge import build_plan, derive_label, join_names, read_manifest_files

PROCFILE = """\
web: python3 app.py
worker: python3 worker.py
release: echo procfile-release
postdeploy: echo procfile-postdeploy
"""
APP_JSON = """\
{"scripts": {"postdeploy": "echo heroku-postdeploy",
             "dokku": {"predeploy": "echo dokku-predeploy", "postdeploy": "echo dokku-postdeploy"}}}
"""
TOML = """\
preset = "laravel"

[processes.worker]
command = "python3 worker.py --fast"
scale = 3

[[postdeploy]]
label = "Warm cache"
command = "echo toml-warm"
timeout = "5m"

[[postdeploy]]
command = "echo toml-ping"

[[on_failure]]
command = "echo failed"
"""
OPERATOR = [
    OperatorHook(phase="postdeploy", label="Notify", command="echo notify", timeout=30.0),
    OperatorHook(phase="release", label="Backup", command="echo backup", memory=1024**3),
    OperatorHook(phase="postdeploy", label="Purge CDN", command="echo purge"),
]
M = DEFAULT_MEMORY


def test_all_three_files_with_preset_and_operator_hooks() -> None:
    plan = build_plan({"Procfile": PROCFILE, "app.json": APP_JSON, "dockyard.toml": TOML}, OPERATOR)
    assert plan.predeploy == [
        Command(label="echo dokku-predeploy", command="echo dokku-predeploy", timeout=1800.0,
                memory=M, source="app.json:scripts.dokku.predeploy"),
    ]
    assert plan.release == [
        Command(label="echo procfile-release", command="echo procfile-release", timeout=1800.0,
                memory=M, source="Procfile:3"),
        Command(label="Backup", command="echo backup", timeout=1800.0, memory=1024**3,
                source="operator"),
    ]
    assert plan.postdeploy == [
        Command(label="Warm cache", command="echo toml-warm", timeout=300.0, memory=M,
                source="dockyard.toml:[[postdeploy]]#1 (line 7)"),
        Command(label="echo toml-ping", command="echo toml-ping", timeout=1200.0, memory=M,
                source="dockyard.toml:[[postdeploy]]#2 (line 12)"),
        Command(label="Notify", command="echo notify", timeout=30.0, memory=M, source="operator"),
        Command(label="Purge CDN", command="echo purge", timeout=1200.0, memory=M,
                source="operator"),
    ]
    assert plan.after_switch == []
    assert plan.on_failure == [
        Command(label="echo failed", command="echo failed", timeout=600.0, memory=M,
                source="dockyard.toml:[[on_failure]]#1 (line 15)"),
    ]
    assert plan.processes == [
        ProcessType(name="web", command="python3 app.py", scale=1, source="Procfile:1"),
        ProcessType(name="worker", command="python3 worker.py --fast", scale=3,
                    source="dockyard.toml:[processes.worker] (line 3)"),
    ]
    assert plan.notes == [
        "release: Procfile wins over preset laravel",
        ("postdeploy: dockyard.toml wins over Procfile (postdeploy:), app.json"
        " (scripts.dokku.postdeploy, scripts.postdeploy) and preset laravel"),
        "processes.worker: dockyard.toml command overrides Procfile:2",
    ]


def test_procfile_wins_over_app_json_for_postdeploy() -> None:
    plan = build_plan({"Procfile": PROCFILE, "app.json": APP_JSON})
    assert [c.command for c in plan.postdeploy] == ["echo procfile-postdeploy"]
    assert plan.notes == [
        "postdeploy: Procfile wins over app.json (scripts.dokku.postdeploy, scripts.postdeploy)",
    ]


def test_app_json_dokku_postdeploy_wins_over_scripts_postdeploy() -> None:
    plan = build_plan({"Procfile": "web: x\n", "app.json": APP_JSON})
    assert [c.source for c in plan.postdeploy] == ["app.json:scripts.dokku.postdeploy"]
    assert plan.notes == [
        "postdeploy: app.json scripts.dokku.postdeploy wins over scripts.postdeploy"]


RAILS_APP_JSON = '{"scripts": {"postdeploy": "bundle exec rake db:setup"}}'
FIRST_ONLY_NOTE = ("postdeploy: app.json:scripts.postdeploy runs on the app's first deploy only, as"
                   ' on Heroku and Dokku (appjson_postdeploy = "every" in dockyard.toml runs it on'
                   " every deploy)")


def test_app_json_scripts_postdeploy_is_first_deploy_only() -> None:
    plan = build_plan({"Procfile": "web: x\n", "app.json": RAILS_APP_JSON},
                      [OperatorHook(phase="postdeploy", label="Warm", command="echo warm")])
    assert [(c.command, c.first_deploy_only) for c in plan.postdeploy] == [
        ("bundle exec rake db:setup", True), ("echo warm", False)]
    assert plan.notes == [FIRST_ONLY_NOTE]


@pytest.mark.parametrize(("setting", "first_only"), [("", True), ('appjson_postdeploy = "first"\n',
                                                                 True),
                                                     ('appjson_postdeploy = "every"\n', False)])
def test_appjson_postdeploy_setting(setting: str, first_only: bool) -> None:
    plan = build_plan({"Procfile": "web: x\n", "app.json": RAILS_APP_JSON,
                       "dockyard.toml": setting})
    assert [c.first_deploy_only for c in plan.postdeploy] == [first_only]
    assert plan.notes == [FIRST_ONLY_NOTE if first_only else
                          'postdeploy: app.json:scripts.postdeploy runs on every deploy'
                          ' (appjson_postdeploy = "every")']


def test_only_app_json_scripts_postdeploy_is_first_deploy_only() -> None:
    """Dokku's own postdeploy, the Procfile's, the toml's and the preset's run every deploy."""
    for files in ({"Procfile": "web: x\n", "app.json": APP_JSON},
                  {"Procfile": PROCFILE, "app.json": RAILS_APP_JSON},
                  {"Procfile": PROCFILE, "app.json": APP_JSON, "dockyard.toml": TOML}):
        plan = build_plan(files)
        assert plan.postdeploy and not any(c.first_deploy_only for c in plan.postdeploy)
        assert FIRST_ONLY_NOTE not in plan.notes


def test_preset_alone_expands_with_labels() -> None:
    plan = build_plan({"Procfile": "web: php -S 0.0.0.0:$PORT\n",
                       "dockyard.toml": 'preset = "laravel"'})
    assert [(c.label, c.command, c.source) for c in plan.release] == [
        ("Migrate database", "php artisan migrate --force", "preset:laravel"),
    ]
    assert [c.label for c in plan.postdeploy] == ["Cache config", "Cache routes", "Cache views"]
    assert plan.notes == []


def test_empty_phase_in_toml_silences_the_preset() -> None:
    plan = build_plan({"Procfile": "web: x\n",
                       "dockyard.toml": 'preset = "laravel"\npostdeploy = []\n'})
    assert plan.postdeploy == []
    assert plan.notes == ["postdeploy: dockyard.toml wins over preset laravel"]


def test_operator_hooks_alone() -> None:
    hooks = [OperatorHook(phase="after_switch", label="Tell chat", command="echo hi")]
    plan = build_plan({"Procfile": "web: x\n"}, hooks)
    assert plan.after_switch == [Command(label="Tell chat", command="echo hi", timeout=1200.0,
                                         memory=M, source="operator")]


def test_operator_hook_in_unknown_phase_is_refused() -> None:
    with pytest.raises(InvalidHook, match="unknown phase"):
        build_plan({}, [OperatorHook(phase="predeploi", label="x", command="y")])


def test_defaults_when_nothing_is_given() -> None:
    plan = build_plan({})
    assert plan == Plan(notes=["no web process: the app gets no HTTP route (worker-only)"])
    assert plan.health == Health() and plan.build == BuildConfig() and plan.drain == 30.0


def test_custom_defaults() -> None:
    plan = build_plan({"Procfile": "web: x\nrelease: y\n"},
                      timeouts={Phase.PREDEPLOY: 1, Phase.RELEASE: 2, Phase.POSTDEPLOY: 3,
                                Phase.AFTER_SWITCH: 4, Phase.ON_FAILURE: 5},
                      memory=64 * 1024**2)
    assert (plan.release[0].timeout, plan.release[0].memory) == (2, 64 * 1024**2)


def test_health_build_and_drain_from_toml() -> None:
    plan = build_plan({"Procfile": "web: x\n", "dockyard.toml":
                       'drain = "5s"\n[health]\npath = "/up"\n'
                       '[build]\ndockerfile = "Dockerfile.prod"\n'})
    assert plan.health == Health(path="/up")
    assert plan.build == BuildConfig(dockerfile="Dockerfile.prod")
    assert plan.drain == 5.0


def test_worker_only_app_is_noted() -> None:
    plan = build_plan({"Procfile": "worker: python3 w.py\n"})
    assert [p.name for p in plan.processes] == ["worker"]
    assert plan.notes == ["no web process: the app gets no HTTP route (worker-only)"]


def test_toml_may_add_a_process_with_a_command() -> None:
    plan = build_plan({"Procfile": "web: x\n",
                       "dockyard.toml": '[processes.clock]\ncommand = "python3 clock.py"\n'})
    assert plan.processes[1] == ProcessType(name="clock", command="python3 clock.py", scale=1,
                                            source="dockyard.toml:[processes.clock] (line 1)")


def test_toml_scale_of_an_unknown_process_is_an_error() -> None:
    with pytest.raises(ManifestError) as info:
        build_plan({"Procfile": "web: x\n", "dockyard.toml": '\n[processes.wrker]\nscale = 2\n'})
    assert str(info.value) == ("dockyard.toml:2: processes.wrker: no `wrker:` line in the Procfile"
                               " and no `command` here")


def test_scale_only_keeps_the_procfile_source() -> None:
    plan = build_plan({"Procfile": "web: x\n", "dockyard.toml": "[processes.web]\nscale = 0\n"})
    assert plan.processes == [ProcessType(name="web", command="x", scale=0, source="Procfile:1")]
    assert plan.notes == []


def test_errors_of_any_file_surface() -> None:
    with pytest.raises(ManifestError, match=r"^Procfile:2: "):
        build_plan({"Procfile": "web: x\nbad line\n", "app.json": "{}"})
    with pytest.raises(ManifestError, match=r"^app.json:1: "):
        build_plan({"Procfile": "web: x\n", "app.json": "{"})


def test_derive_label() -> None:
    assert derive_label("  php   artisan\tmigrate ") == "php artisan migrate"
    assert derive_label("x" * 50) == "x" * 40
    assert derive_label("a" * 39 + " b") == "a" * 39


def test_join_names() -> None:
    assert [join_names(x) for x in (["a"], ["a", "b"], ["a", "b", "c"])] == [
        "a", "a and b", "a, b and c"]


def test_read_manifest_files(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: x\n")
    (tmp_path / "dockyard.toml").write_bytes("\ufeffpreset = \"rails\"\n".encode())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "app.json").write_text("{}")
    assert read_manifest_files(tmp_path) == {"Procfile": "web: x\n",
                                             "dockyard.toml": 'preset = "rails"\n'}


def test_read_manifest_files_refuses_binary(tmp_path: Path) -> None:
    (tmp_path / "app.json").write_bytes(b'{\n"a": "\xff"}')
    with pytest.raises(ManifestError) as info:
        read_manifest_files(tmp_path)
    assert str(info.value) == "app.json:2: is not UTF-8 text"


def test_plan_rebuilds_from_stored_texts(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(PROCFILE)
    (tmp_path / "app.json").write_text(APP_JSON)
    (tmp_path / "dockyard.toml").write_text(TOML)
    files = read_manifest_files(tmp_path)
    assert build_plan(files) == build_plan({"Procfile": PROCFILE, "app.json": APP_JSON,
                                            "dockyard.toml": TOML})
