"""dockyard.toml: every table, and every malformed case with its line."""

import pytest

from dockyard.contract.manifest import HookSpec
from dockyard.contract.plan import (
    BuildConfig,
    Health,
    Rollout,
    RolloutError,
    RolloutOverride,
    overridden,
)
from dockyard.plan.dockyard_toml import (
    ProcessOverride,
    line_index,
    locate,
    parse_dockyard_toml,
)
from dockyard.plan.errors import ManifestError
from dockyard.plan.rollout_flags import rollout_from_flags

FULL = """\
preset = "laravel"
drain = "10s"

[health]
path = "/up"
timeout = "2m"

[build]
command = "make"
timeout = "1h30m"

[processes.web]
scale = 2

[processes.queue]
command = "php artisan queue:work"
scale = 0

[[release]]
label = "Migrate"
command = "php artisan migrate --force"
timeout = "20m"
memory = "1G"

[[release]]
command = '''
php artisan db:seed
'''

[[after_switch]]
command = "curl -X POST https://example.com/deployed"
timeout = 90
"""


def test_full_manifest() -> None:
    parsed = parse_dockyard_toml(FULL)
    assert parsed.preset == "laravel"
    assert parsed.drain == 10.0
    assert parsed.health == Health(path="/up", timeout=120.0)
    assert parsed.build == BuildConfig(dockerfile="Dockerfile", command="make", timeout=5400.0)
    assert parsed.processes == [
        ProcessOverride(name="web", scale=2, line=12,
                        source="dockyard.toml:[processes.web] (line 12)"),
        ProcessOverride(name="queue", scale=0, command="php artisan queue:work", line=15,
                        source="dockyard.toml:[processes.queue] (line 15)"),
    ]
    assert parsed.hooks == {
        "release": [
            HookSpec(label="Migrate", command="php artisan migrate --force", timeout=1200.0,
                     memory=1024**3, source="dockyard.toml:[[release]]#1 (line 19)"),
            HookSpec(command="php artisan db:seed",
                     source="dockyard.toml:[[release]]#2 (line 25)"),
        ],
        "after_switch": [
            HookSpec(command="curl -X POST https://example.com/deployed", timeout=90.0,
                     source="dockyard.toml:[[after_switch]]#1 (line 30)"),
        ],
    }


def test_empty_file_and_empty_phase() -> None:
    assert parse_dockyard_toml("").hooks == {}
    # An empty array still defines the phase: it silences lower-ranked sources.
    assert parse_dockyard_toml("postdeploy = []\n").hooks == {"postdeploy": []}


def test_drain_may_be_zero() -> None:
    assert parse_dockyard_toml("drain = 0\n").drain == 0.0


def test_line_index_skips_multiline_strings() -> None:
    text = '[[release]]\ncommand = """\n[health]\ntimeout = 1\n"""\n[[release]]\ncommand = "b"\n'
    assert line_index(text) == {
        ("release",): 1, ("release", 0): 1, ("release", 0, "command"): 2,
        ("release", 1): 6, ("release", 1, "command"): 7,
    }


def test_locate_falls_back_to_the_enclosing_table() -> None:
    text = '[processes."my-web"]\nscale = 1\n\n[[release]]\ncommand = "x"\n'
    assert locate(text, ("processes", "my-web", "scale")) == 2
    assert locate(text, ("processes", "my-web", "command")) == 1
    assert locate(text, ("release", 0, "timeout")) == 4
    assert locate(text, ("health",)) is None


BAD_TIMEOUT = """\
preset = "django"

[[release]]
command = "migrate"

[[release]]
label = "Seed"
timeout = "ten minutes"
command = "seed"
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BAD_TIMEOUT, ('dockyard.toml:8: release[1].timeout: "ten minutes" is not a duration'
                      ' (use e.g. "90s", "20m", "1h30m", or a number of seconds)')),
        ('[[release]]\ncommand = "a"\n\n[[predeploi]]\ncommand = "b"\n',
         ("dockyard.toml:4: unknown phase `predeploi` (known phases: predeploy, release,"
         " postdeploy, after_switch, on_failure); did you mean `predeploy`?")),
        ('preset = "laravel"\nprest = 1\n',
         ("dockyard.toml:2: unknown key `prest` (known: preset, drain, appjson_postdeploy,"
         " rollback_hooks, predeploy, release, postdeploy, after_switch, on_failure, health,"
         " build, rollout, processes); did you mean `preset`?")),
        ('[helth]\npath = "/"\n', ("dockyard.toml:1: unknown table `helth` (known: preset, drain,"
         " appjson_postdeploy, rollback_hooks, predeploy, release, postdeploy, after_switch,"
         " on_failure, health, build, rollout, processes); did you mean `health`?")),
        ('[[release]]\ncommand = "a"\nlable = "x"\n',
         ("dockyard.toml:3: release[0]: unknown key `lable` (known keys: command, label, timeout,"
         " memory)")),
        ('[[release]]\nlabel = "x"\n',
         "dockyard.toml:1: release[0]: missing required key `command`"),
        ('preset = "rails"\nappjson_postdeploy = "always"\n',
         "dockyard.toml:2: appjson_postdeploy: invalid enum value 'always'"),
        ('[[release]]\ncommand = "  "\n', "dockyard.toml:2: release[0].command: must not be empty"),
        ('[[release]]\ncommand = 3\n',
         "dockyard.toml:2: release[0].command: expected `str`, got `int`"),
        ('[release]\ncommand = "x"\n', ("dockyard.toml:1: release: expected `array | null`, got"
         " `object` (write [[release]], one table per command)")),
        ('preset = "wordpress"\n', ("dockyard.toml:1: preset: unknown preset `wordpress` (known"
         " presets: craft, django, laravel, rails, symfony)")),
        ('[[postdeploy]]\ncommand = "a"\nmemory = "lots"\n',
         ('dockyard.toml:3: postdeploy[0].memory: "lots" is not a memory size'
          ' (use e.g. "512M", "1G", "256MiB", or a number of bytes)')),
        ('[[on_failure]]\ncommand = "a"\ntimeout = -5\n',
         ("dockyard.toml:3: on_failure[0].timeout: -5 is not a positive duration (use e.g. \"90s\","
         ' "20m", "1h30m", or a number of seconds)')),
        ('[health]\npath = "up"\n', 'dockyard.toml:2: health.path: "up" must start with "/"'),
        ('[health]\ntimeout = "soon"\n',
         ('dockyard.toml:2: health.timeout: "soon" is not a duration'
          ' (use e.g. "90s", "20m", "1h30m", or a number of seconds)')),
        ('[build]\ntimeout = true\n',
         "dockyard.toml:2: build.timeout: expected `int | float | str | null`, got `bool`"),
        ('drain = "1 fortnight"\n', ('dockyard.toml:1: drain: "1 fortnight" is not a duration'
         ' (use e.g. "90s", "20m", "1h30m", or a number of seconds)')),
        ('[processes.web]\nscale = -1\n',
         "dockyard.toml:2: processes.web.scale: expected `int` >= 0"),
        ('[processes.web]\nscale = "two"\n',
         "dockyard.toml:2: processes.web.scale: expected `int | null`, got `str`"),
        ('[processes.web]\nscal = 1\n',
         "dockyard.toml:2: processes.web: unknown key `scal` (known keys: scale, command)"),
        ('\n[processes."my web"]\nscale = 1\n', ("dockyard.toml:2: processes.my web: a process name"
         " may hold only letters, digits, '_' and '-'")),
        ('[processes]\nweb = 2\n', "dockyard.toml:2: processes.web: expected `object`, got `int`"),
        ('processes = 3\n',
         "dockyard.toml:1: processes: must be a table of [processes.<name>] tables"),
    ],
)
def test_malformed(text: str, expected: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_dockyard_toml(text)
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[release]]\ncommand = "a"\ntimeout = \n', "dockyard.toml:3: Invalid value (column 11)"),
        ('[[release]\ncommand = "a"\n', "dockyard.toml:1: "),
        ('preset = "a"\npreset = "b"\n', "dockyard.toml:2: "),
        ('[[release]]\ncommand = "unclosed\n', "dockyard.toml:2: "),
    ],
)
def test_bad_syntax_names_the_line(text: str, expected: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_dockyard_toml(text)
    assert str(info.value).startswith(expected)


def test_rollout_table() -> None:
    manifest = parse_dockyard_toml('[rollout]\nsteps = [10, 50]\nhold = "2m"\n'
                                   'max_error_increase = 0\nmin_requests = 100\n'
                                   'inconclusive = "abort"\n')
    assert manifest.rollout == Rollout(steps=[10, 50], hold=120, max_error_increase=0.0,
                                       min_requests=100, inconclusive="abort")
    assert parse_dockyard_toml("[rollout]\n").rollout == Rollout()
    watch_only = parse_dockyard_toml('[rollout]\nsteps = []\nwatch = "5m"\n').rollout
    assert watch_only == Rollout(steps=[], watch=300)
    assert parse_dockyard_toml("").rollout is None


@pytest.mark.parametrize(("text", "expected"), [
    ("[rollout]\nsteps = [5, 7]\n", "dockyard.toml:2: rollout.steps: 7 is not a share the "
     "router can give: a multiple of 5 between 5 and 95"),
    ("[rollout]\nsteps = [25, 10]\n", "dockyard.toml:2: rollout.steps: canary steps must grow: "
     "10 comes after 25"),
    ("[rollout]\nsteps = [100]\n", "100 is not a share the router can give"),
    ("[rollout]\nsteps = []\n", "rollout.steps: no step and no watch window"),
    ("[rollout]\nsteps = [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]\n",
     "rollout.steps: at most 10 canary steps"),
    ("[rollout]\nwatch = -1\n", "rollout.watch: -1 is not a positive duration"),
    ("[rollout]\nhold = \"soon\"\n", 'dockyard.toml:2: rollout.hold: "soon" is not a '
     "duration"),
    ("[rollout]\nmax_error_increase = 2\n", "2.0 is not a fraction of requests between 0 and 1"),
    ("[rollout]\nmax_latency_ratio = 0.5\n", "0.5 is not a ratio between 1 and 100"),
    ("[rollout]\nmin_requests = 0\n", "0 is not a count between 1 and 1000000"),
    ("[rollout]\ninconclusive = \"pause\"\n", "dockyard.toml:2"),
    ("[rollout]\nstep = [5]\n", "unknown key `step`"),
])
def test_rollout_refusals_name_the_key_and_line(text: str, expected: str) -> None:
    with pytest.raises(ManifestError) as refused:
        parse_dockyard_toml(text)
    assert expected in str(refused.value)


def test_a_deploys_own_rollout_goes_over_the_manifests() -> None:
    manifest = Rollout(steps=[5, 25], hold=60, watch=300)
    assert overridden(manifest, None) == manifest
    assert overridden(manifest, RolloutOverride(off=True)) is None
    assert overridden(manifest, RolloutOverride(steps=[50], hold=10)) == Rollout(
        steps=[50], hold=10, watch=300)
    # A watch alone adds no canary to an app without [rollout]; nothing at all is none.
    assert overridden(None, RolloutOverride(watch=120)) == Rollout(steps=[], watch=120)
    assert overridden(Rollout(steps=[], watch=60), RolloutOverride(watch=0)) is None
    assert rollout_from_flags(None, None, None, False) is None
    assert rollout_from_flags("5, 25", "30s", "5m", False) == RolloutOverride(
        steps=[5, 25], hold=30, watch=300)


@pytest.mark.parametrize(("flags", "expected"), [
    (("5,7", None, None, False), "7 is not a share the router can give"),
    (("25,10", None, None, False), "canary steps must grow: 10 comes after 25"),
    (("five", None, None, False), "canary: 'five' is not a list of percentages"),
    ((None, "soon", None, False), 'hold or watch: "soon" is not a duration'),
    ((None, "0", None, False), 'hold or watch: "0" is not a positive duration'),
    ((None, "48h", None, False), "held more than 0 s and at most 86400 s"),
    (("5", None, None, True), "no rollout (--no-rollout) goes with no step, hold or watch"),
])
def test_a_deploys_own_rollout_is_refused_naming_the_problem(
        flags: tuple[str | None, str | None, str | None, bool], expected: str) -> None:
    with pytest.raises(RolloutError) as refused:
        rollout_from_flags(*flags)
    assert expected in str(refused.value)
