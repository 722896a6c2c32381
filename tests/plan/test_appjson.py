"""app.json scripts: which keys count, bad JSON with its line, wrong types naming the key."""

import pytest

from dockyard.plan.appjson import line_of_offset, parse_app_json
from dockyard.plan.errors import ManifestError
from dockyard.schemas.manifest import HookSpec


def test_dokku_and_heroku_scripts() -> None:
    parsed = parse_app_json(
        '{"name": "x", "env": {"A": {"value": "1"}}, "scripts": {"postdeploy": "echo heroku",'
        ' "test": "pytest", "dokku": {"predeploy": "touch /app/x"}}}'
    )
    assert parsed.hooks == {
        "predeploy": HookSpec(command="touch /app/x", source="app.json:scripts.dokku.predeploy"),
        "postdeploy": HookSpec(command="echo heroku", source="app.json:scripts.postdeploy"),
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


def test_bad_json_names_the_line() -> None:
    text = '{\n  "scripts": {\n    "postdeploy": "echo",\n  }\n}\n'
    with pytest.raises(ManifestError) as info:
        parse_app_json(text)
    assert info.value.line == 4
    assert str(info.value) == "app.json:4: JSON is malformed: trailing comma in object"


def test_truncated_json() -> None:
    with pytest.raises(ManifestError) as info:
        parse_app_json('{\n"scripts":\n')
    assert str(info.value) == "app.json:2: JSON ends too early (unclosed { or [?)"


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
