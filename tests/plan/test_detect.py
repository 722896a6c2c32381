"""Detection as plain values: which buildpack a tree's names and small files make."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.contract.plan import Buildpack, BuildStep, ProcessType
from dockyard.plan.detect import LISTING, MAX_LISTED, detect, listing, read_build_files
from dockyard.plan.errors import ManifestError
from dockyard.plan.merge import build_plan


def tree(*names: str, **texts: str) -> dict[str, str]:
    """A files mapping: the listing of names (and texts' names) plus the texts."""
    files = {name.replace("_", "."): text for name, text in texts.items()}
    return {LISTING: "\n".join(sorted({*names, *files})), **files}


def test_requirements_txt_is_a_python_build() -> None:
    notes: list[str] = []
    found = detect(tree(**{"requirements_txt": "flask==3.0.3\n"}), "Dockerfile", notes)
    assert found == Buildpack(
        language="python", detected=["requirements.txt"], lock_files=["requirements.txt"],
        deps_dir=".venv", path=[".venv/bin"],
        env={"PYTHONUNBUFFERED": "true", "WEB_CONCURRENCY": "2", "FORWARDED_ALLOW_IPS": "*"},
        steps=[BuildStep(label="Create the virtualenv .venv", kind="python-venv"),
               BuildStep(label="Install requirements.txt", kind="python-requirements",
                         file="requirements.txt")])
    assert notes == []


def test_every_python_dependency_file_is_detected_lock_files_first() -> None:
    for name, kind in (("uv.lock", "uv-sync"), ("Pipfile.lock", "python-packages"),
                       ("pyproject.toml", "python-packages")):
        texts = {"Pipfile.lock": '{"default": {"flask": {"version": "==3.0.3"}}}',
                 "pyproject.toml": '[project]\nname = "x"\ndependencies = ["flask>=3"]\n'}
        files = {LISTING: name, **({name: texts[name]} if name in texts else {})}
        found = detect(files, "Dockerfile", [])
        assert (found.language, found.steps[1].kind) == ("python", kind), name
    notes: list[str] = []
    both = detect(tree("uv.lock", "requirements.txt", "pyproject.toml"), "Dockerfile", notes)
    assert both.detected == ["uv.lock"] and both.lock_files == ["pyproject.toml", "uv.lock"]
    assert notes == ["build: uv.lock wins over requirements.txt, pyproject.toml"]


def test_pipfile_lock_and_pyproject_become_pinned_packages() -> None:
    lock = ('{"default": {"flask": {"version": "==3.0.3"}, "psycopg": {"version": "==3.2.3",'
            ' "extras": ["binary"], "markers": "python_version >= \'3.8\'"}}}')
    found = detect(tree(**{"Pipfile_lock": lock}), "Dockerfile", [])
    assert found.steps[1].args == ["flask==3.0.3",
                                   "psycopg[binary]==3.2.3; python_version >= '3.8'"]
    project = detect(tree(**{"pyproject_toml": '[project]\ndependencies = ["a==1", "b"]\n'}),
                     "Dockerfile", [])
    assert project.steps[1].args == ["a==1", "b"]


def test_interpreter_versions_are_read_and_checked() -> None:
    found = detect(tree(**{"requirements_txt": "", "_python-version": "3.11\n"}), "D", [])
    assert (found.version, found.version_file) == ("3.11", ".python-version")
    runtime = detect(tree(**{"requirements_txt": "", "runtime_txt": "python-3.12.1\n"}), "D", [])
    assert (runtime.version, runtime.version_file) == ("3.12.1", "runtime.txt")
    with pytest.raises(ManifestError, match=r"^\.python-version:1: 'pypy3' is not a Python"):
        detect(tree(**{"requirements_txt": "", "_python-version": "pypy3\n"}), "D", [])
    with pytest.raises(ManifestError, match=r"^runtime\.txt:1: 'ruby-3' is not a Python"):
        detect(tree(**{"requirements_txt": "", "runtime_txt": "ruby-3"}), "D", [])


def test_a_broken_requirements_file_names_its_line() -> None:
    with pytest.raises(ManifestError) as caught:
        detect(tree(**{"requirements_txt": "flask\n# fine\n<<<<<<< HEAD\n"}), "D", [])
    assert str(caught.value) == ("requirements.txt:3: '<<<<<<< HEAD' is not a requirement "
                                 "(write e.g. flask==3.0.3, one per line)")


def test_included_requirement_files_are_lock_files_and_local_installs_need_the_source() -> None:
    found = detect(tree(**{"requirements_txt": "-r base.txt\n-c pins.txt\n-e .\n"}), "D", [])
    assert found.lock_files == ["requirements.txt", "base.txt", "pins.txt"]
    assert found.needs_source


def test_package_json_is_a_node_build() -> None:
    package = '{"scripts": {"start": "node s.js", "build": "b"}, "engines": {"node": ">=18"}}'
    found = detect(tree("package-lock.json", **{"package_json": package}), "Dockerfile", [])
    assert (found.language, found.version, found.version_file) == ("node", ">=18", "package.json")
    assert [s.kind for s in found.steps] == ["npm-ci", "npm-build"]
    assert [s.installs for s in found.steps] == [True, False]
    assert found.lock_files == ["package.json", "package-lock.json"]
    assert found.path == ["node_modules/.bin"] and found.env["NODE_ENV"] == "production"


def test_node_without_a_lock_file_installs_and_says_so() -> None:
    notes: list[str] = []
    found = detect(tree(**{"package_json": "{}"}), "Dockerfile", notes)
    assert [s.kind for s in found.steps] == ["npm-install"]
    assert "no package-lock.json" in notes[0]


def test_node_errors_name_the_file() -> None:
    with pytest.raises(ManifestError, match=r"^package\.json:2: JSON is malformed"):
        detect(tree(**{"package_json": '{\n  "a": ,\n}'}), "D", [])
    with pytest.raises(ManifestError, match=r"^yarn\.lock: yarn is not supported"):
        detect(tree("yarn.lock", **{"package_json": "{}"}), "D", [])
    with pytest.raises(ManifestError, match=r"^package\.json: engines\.node: not a version"):
        detect(tree(**{"package_json": '{"engines": {"node": "banana"}}'}), "D", [])


def test_static_site_dockerfile_and_nothing() -> None:
    assert detect(tree("index.html"), "Dockerfile", []) == Buildpack(language="static",
                                                                      detected=["index.html"])
    found = detect(tree("Dockerfile", "index.html"), "Dockerfile", [])
    assert found.dockerfile and found.language == "static"
    assert detect(tree("README.md"), "Dockerfile", []) == Buildpack()
    # Older builds kept no listing: the kept files are all that is known.
    assert detect({"Procfile": "web: x"}, "Dockerfile", []) == Buildpack()


def test_default_web_processes_and_the_refusal_to_guess() -> None:
    static = build_plan(tree("index.html"))
    assert static.processes[0].name == "web" and "http.server" in static.processes[0].command
    node = build_plan(tree(**{"package_json": '{"scripts": {"start": "node app.js"}}'}))
    assert node.processes == [ProcessType(name="web", command="npm start",
                                          source="package.json:scripts.start")]
    assert build_plan(tree("server.js", **{"package_json": "{}"})).processes[0].command == (
        "node server.js")
    with pytest.raises(ManifestError, match="no scripts.start and there is no server.js"):
        build_plan(tree(**{"package_json": "{}"}))
    with pytest.raises(ManifestError) as caught:
        build_plan(tree("app.py", "shop/wsgi.py", **{"requirements_txt": "gunicorn\nflask\n"}))
    assert str(caught.value) == (
        "Procfile: no web process: a Python app needs a Procfile saying how to serve it (found "
        "app.py, shop/wsgi.py); Dockyard does not guess: add e.g. `web: gunicorn app:app` to a "
        "Procfile (with gunicorn in your dependencies)")
    # A Procfile's web is used as it is; a Dockerfile app keeps its own ways.
    plan = build_plan({**tree("app.py", **{"requirements_txt": "x"}),
                       "Procfile": "web: gunicorn app:app\n"})
    assert [p.command for p in plan.processes] == ["gunicorn app:app"]
    assert build_plan(tree("Dockerfile", **{"requirements_txt": "x"})).processes == []


def test_the_build_plan_is_in_the_notes() -> None:
    plan = build_plan({**tree(**{"requirements_txt": "flask", "_python-version": "3.11"}),
                       "Procfile": "web: gunicorn app:app\n"})
    assert plan.notes == [
        "build: python (requirements.txt)", "build: python 3.11 asked for by .python-version",
        "build: step 1: Create the virtualenv .venv", "build: step 2: Install requirements.txt",
        "build: dependencies cached while requirements.txt stay unchanged"]


def test_read_build_files_lists_the_tree_bounded(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flask\n")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "wsgi.py").write_text("")
    (tmp_path / ".git").mkdir()
    files = read_build_files(tmp_path)
    assert files == {LISTING: ".git\nrequirements.txt\nshop\nshop/wsgi.py",
                     "requirements.txt": "flask\n"}
    for i in range(MAX_LISTED + 10):
        (tmp_path / f"f{i}").touch()
    assert len(listing(tmp_path)) == MAX_LISTED
    (tmp_path / "package.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ManifestError, match=r"^package\.json:1: is not UTF-8 text"):
        read_build_files(tmp_path)
