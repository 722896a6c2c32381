"""app.json scripts: which keys count, bad JSON with its line, wrong types naming the key."""

import pytest

from dockyard.contract.manifest import HookSpec
from dockyard.plan.appjson import line_of_offset, parse_app_json
from dockyard.plan.errors import ManifestError


def test_dokku_and_heroku_scripts() -> None:
    parsed = parse_app_json(
        '{"name": "x", "env": {"A": {"value": "1"}}, "scripts": {"postdeploy": "echo heroku",'
        ' "test": "pytest", "dokku": {"predeploy": "touch /app/x"}}}'
    )
    assert parsed.hooks == {
        "predeploy": HookSpec(command="touch /app/x", source="app.json:scripts.dokku.predeploy"),
        "postdeploy": HookSpec(command="echo heroku", source="app.json:scripts.postdeploy",
                               first_deploy_only=True),
    }
    assert parsed.keys == {
        "predeploy": ["scripts.dokku.predeploy"], "postdeploy": ["scripts.postdeploy"],
    }


def test_dokku_postdeploy_wins_inside_app_json() -> None:
    parsed = parse_app_json(
        '{"scripts": {"postdeploy": "echo heroku", "dokku": {"postdeploy": "echo dokku"}}}'
    )
    assert parsed.hooks["postdeploy"].command == "echo dokku"
    assert parsed.keys["postdeploy"] == ["scripts.dokku.postdeploy", "scripts.postdeploy"]


def test_no_scripts_and_empty_scripts() -> None:
    assert parse_app_json("{}").hooks == {}
    assert parse_app_json('{"scripts": {"postdeploy": "  ", "dokku": {}}}').hooks == {}


ACCEPTED = "// and /* */ comments and trailing commas are accepted, as Dokku reads app.json"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('{\n  "scripts": {\n    "postdeploy": "echo"\n    "test": "x"\n  }\n}\n', 4,
         f"JSON is malformed: expected ',' or '}}' ({ACCEPTED})"),
        # A comment before the error does not move the line the error names.
        ('{\n  // one\n  /* two\n  three */\n  "scripts": {"postdeploy": echo}\n}\n', 5,
         f"JSON is malformed: invalid character ({ACCEPTED})"),
        ('{"scripts": [,]}', 1, f"JSON is malformed: invalid character ({ACCEPTED})"),
        ('{\n"scripts": {"postdeploy": "x"}\n/* never closed\n}\n', 3,
         "a /* comment is never closed with */"),
    ],
)
def test_bad_json_names_the_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_app_json(text)
    assert (info.value.line, info.value.problem) == (line, problem)


def test_truncated_json() -> None:
    with pytest.raises(ManifestError) as info:
        parse_app_json('{\n"scripts":\n')
    assert str(info.value) == f"app.json:2: JSON ends too early (unclosed {{ or [?) ({ACCEPTED})"


# Modelled on a Rails app's app.json for Heroku review apps: `scripts.postdeploy` sets the
# database up, which Heroku and Dokku run once, when the app is first deployed.
RAILS_APP_JSON = """\
{
  "name": "rails-shop",
  "description": "A Rails storefront",
  "repository": "https://github.com/example/rails-shop",
  "scripts": {
    "postdeploy": "bundle exec rake db:setup"
  },
  "env": {
    "SECRET_KEY_BASE": {"generator": "secret"},
    "RAILS_ENV": {"value": "production"}
  },
  "addons": ["heroku-postgresql", "heroku-redis"],
  "buildpacks": [{"url": "heroku/ruby"}]
}
"""

# Modelled on a Dokku app's app.json as Dokku 0.37 reads it: comments, trailing commas, and
# URLs holding `//` inside strings.
DOKKU_APP_JSON = """\
{
  // deployment tasks, see https://dokku.com/docs/advanced-usage/deployment-tasks/
  "name": "blog", /* the app's name */
  "healthchecks": {"web": [{"type": "startup", "path": "/health",}]},
  "scripts": {
    "dokku": {
      /* committed into the image */
      "predeploy": "python manage.py collectstatic --noinput",
      // tells the chat every deploy
      "postdeploy": "curl -fsS https://hooks.example.com/deployed?app=blog",
    },
    "postdeploy": "python manage.py loaddata initial // not a comment",
  },
}
"""


def test_real_world_rails_app_json() -> None:
    parsed = parse_app_json(RAILS_APP_JSON)
    assert parsed.hooks == {"postdeploy": HookSpec(
        command="bundle exec rake db:setup", source="app.json:scripts.postdeploy",
        first_deploy_only=True)}


def test_real_world_dokku_app_json_with_comments_and_trailing_commas() -> None:
    parsed = parse_app_json(DOKKU_APP_JSON)
    assert parsed.hooks == {
        "predeploy": HookSpec(command="python manage.py collectstatic --noinput",
                              source="app.json:scripts.dokku.predeploy"),
        # Dokku's own postdeploy signals every deploy's completion: not first-deploy-only.
        "postdeploy": HookSpec(command="curl -fsS https://hooks.example.com/deployed?app=blog",
                               source="app.json:scripts.dokku.postdeploy"),
    }
    assert parsed.keys["postdeploy"] == ["scripts.dokku.postdeploy", "scripts.postdeploy"]


def test_strings_keep_what_looks_like_comments() -> None:
    parsed = parse_app_json('{"scripts": {"postdeploy": "echo \\"/* x */\\" // y,}"},}')
    assert parsed.hooks["postdeploy"].command == 'echo "/* x */" // y,}'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"scripts": {"postdeploy": 3}}', "scripts.postdeploy: Expected `str | null`, got `int`"),
        ('{"scripts": {"dokku": {"predeploy": ["a"]}}}',
         "scripts.dokku.predeploy: Expected `str | null`, got `array`"),
        ('{"scripts": "echo"}', "scripts: Expected `object | null`, got `str`"),
        ("[]", "Expected `object`, got `array`"),
    ],
)
def test_wrong_types_name_the_key(text: str, problem: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_app_json(text)
    assert (info.value.file, info.value.line, info.value.problem) == ("app.json", None, problem)


def test_line_of_offset() -> None:
    assert [line_of_offset(b"ab\ncd\n", i) for i in (0, 2, 3, 6)] == [1, 1, 2, 3]
