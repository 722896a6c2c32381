"""infra/Dockerfile: read statically, its wheel installed alone, and the image built for real.

No registry answers here, so the image is built FROM a local Debian base made with mmdebstrap
(Debian trixie's own python3, 3.13; `docker import`ed as dockyard-test/python:3-trixie),
standing in for python:3.11-slim. Not bookworm: its Python 3.11.2 predates tarfile's
extraction filters (3.11.4), which the builder uses. Pip inside the build still installs the
dependencies from the index.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docker_support import require_docker

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "infra" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PY_BASE = "dockyard-test/python:3-trixie"
IMAGE = "dockyard-test/dockyard:latest"
IN_CI = bool(os.environ.get("CI"))
# Walking these for the build context would only be slow: they hold nothing the image needs,
# and .dockerignore must keep them out anyway (checked below).
NOT_WALKED = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"}


# ------------------------------------------------------------------ reading the Dockerfile


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword and its raw arguments."""

    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


KNOWN = {"FROM", "ARG", "ENV", "WORKDIR", "COPY", "ADD", "RUN", "USER", "ENTRYPOINT", "CMD",
         "EXPOSE", "LABEL", "VOLUME", "HEALTHCHECK", "STOPSIGNAL", "SHELL", "ONBUILD"}


def copy_sources(inst: Instruction) -> list[str]:
    """The context paths a COPY/ADD takes (none for COPY --from=stage)."""
    parts = json.loads(inst.args) if inst.args.startswith("[") else shlex.split(inst.args)
    flags = [p for p in parts if p.startswith("--")]
    if any(f.startswith("--from") for f in flags):
        return []
    plain = [p for p in parts if not p.startswith("--")]
    return plain[:-1]


# ------------------------------------------------------------------ .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (filepath.Match plus **) as a regex matching a path or a parent."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(f"^{out}(?:/.*)?$")


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes?, regex) per .dockerignore line, in order."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((not negated, _pattern_regex(pattern)))
    return rules


def in_context(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context keeps this path (the last matching rule decides)."""
    keep = True
    for excludes, regex in rules:
        if regex.match(rel):
            keep = not excludes
    return keep


def context_files() -> list[str]:
    """Every file of the repository that `docker build .` would send."""
    rules = ignore_rules()
    files = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in NOT_WALKED]
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), REPO)
            if in_context(rel, rules):
                files.append(rel)
    return sorted(files)


# ------------------------------------------------------------------ static checks


def test_the_dockerfile_parses_and_runs_dockyard_as_a_non_root_user() -> None:
    """ARG BASE before FROM ${BASE}; known instructions; entrypoint dockyard, `service api`."""
    insts = parse_dockerfile(DOCKERFILE.read_text())
    assert {i.keyword for i in insts} <= KNOWN, [i for i in insts if i.keyword not in KNOWN]
    assert insts[0].keyword == "ARG" and insts[0].args == "BASE=python:3.11-slim", insts[0]
    froms = [i for i in insts if i.keyword == "FROM"]
    assert froms and all(i.args.split()[0] == "${BASE}" for i in froms), froms
    final = insts[insts.index(froms[-1]):]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), users
    entry = [i for i in final if i.keyword == "ENTRYPOINT"]
    cmd = [i for i in final if i.keyword == "CMD"]
    assert entry and json.loads(entry[-1].args) == ["dockyard"]
    assert cmd and json.loads(cmd[-1].args) == ["service", "api"]
    runs = " ".join(i.args for i in insts if i.keyword == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), runs
    assert not re.search(r"pip install[^&;]*(\s-e\s|--editable)", runs), runs
    # Only the classic builder's syntax: it is the one every engine has.
    assert "--mount" not in runs


def test_every_copy_source_is_in_the_build_context() -> None:
    """Each COPY source exists and .dockerignore keeps it; the context holds nothing else big."""
    insts = parse_dockerfile(DOCKERFILE.read_text())
    files = context_files()
    sources = [s for i in insts if i.keyword in ("COPY", "ADD") for s in copy_sources(i)]
    assert {"pyproject.toml", "services/"} <= set(sources), sources
    for src in sources:
        if any(ch in src for ch in "*?["):
            continue  # an optional file (README*): fine when absent
        prefix = src.rstrip("/")
        assert (REPO / prefix).exists(), f"COPY {src}: no such path"
        assert any(f == prefix or f.startswith(prefix + "/") for f in files), \
            f"COPY {src}: excluded by .dockerignore"
    tops = {f.split("/", 1)[0] for f in files}
    assert tops <= {"pyproject.toml", "services"} | {t for t in tops
                                                                 if t.startswith("README")}, tops
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


# ------------------------------------------------------------------ the wheel it installs


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` builds, from exactly the files the Dockerfile copies."""
    src = tmp_path_factory.mktemp("context")
    for rel in context_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                           str(src)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (found,) = out.glob("dockyard-*.whl")
    return found


def test_the_wheel_carries_every_module_and_data_file(wheel: Path) -> None:
    """Every file under services/ is in the wheel (a non-editable install sees only what
    pyproject.toml finds), and the console script is declared."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "services" / "dockyard").rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = path.relative_to(REPO / "services").as_posix()
        assert rel in names, f"{path.relative_to(REPO)} is not in the wheel (as {rel})"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "dockyard = dockyard.cli:main" in text


CHECK_INSTALLED = r"""
import importlib, importlib.resources as res, pkgutil, sys
import dockyard
assert dockyard.__file__.startswith(sys.argv[1]), dockyard.__file__
names = [m.name for m in pkgutil.walk_packages(dockyard.__path__, "dockyard.")]
for name in names:
    importlib.import_module(name)
for svc in ("builder", "hook_runner", "scheduler", "router", "notifier", "api"):
    assert f"dockyard.{svc}.app" in names, svc
sample = {p.name for p in res.files("dockyard.demo").joinpath("sample").iterdir()}
assert {"Procfile", "dockyard.toml.tmpl", "app.py"} <= sample, sample
print(len(names))
"""


def test_the_wheel_alone_imports_every_module(wheel: Path, tmp_path: Path) -> None:
    """Installed with --target (not editable) and imported with no path to the repository."""
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                           "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # -S: no site initialisation, so this environment's editable dockyard (a path hook set up
    # by a .pth file) stays out; the dependencies come from site-packages, added by hand.
    deps = [p for p in sys.path if p.endswith("site-packages")]
    prelude = f"import sys; sys.path[:0] = {[str(target), *deps]!r}\n"
    proc = subprocess.run([sys.executable, "-S", "-c", prelude + CHECK_INSTALLED, str(target)],
                          capture_output=True, text=True, timeout=300, check=False,
                          cwd=tmp_path, env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert int(proc.stdout.strip()) > 30


# ------------------------------------------------------------------ the image, for real


def _docker(*args: str, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)


def _missing_tool(tool: str, why: str) -> None:
    if IN_CI:
        pytest.fail(f"CI is set but {tool} is missing: {why}", pytrace=False)
    pytest.skip(f"{tool} is missing ({why}); CI is unset, so this is not a failure")


def ensure_python_base() -> str:
    """A Debian trixie image with python3 and venv, made without a registry (idempotent).

    mmdebstrap downloads the packages from the Debian mirror; the host's extra CA
    certificates are copied in so pip inside a build trusts what the host trusts."""
    size = _docker("image", "inspect", "-f", "{{.Size}}", PY_BASE, timeout=60)
    if size.returncode == 0 and size.stdout.strip() not in ("", "0"):
        return PY_BASE
    if size.returncode == 0:
        # An empty image of that tag: a build cut short once imported what it had (nothing).
        _docker("rmi", "-f", PY_BASE, timeout=60)
    if shutil.which("mmdebstrap") is None:
        _missing_tool("mmdebstrap", f"it builds {PY_BASE}: apt-get install mmdebstrap")
    hook = ('for c in /usr/local/share/ca-certificates/*.crt; do [ -f "$c" ] && '
            'cp "$c" "$1/usr/local/share/ca-certificates/"; done; '
            'chroot "$1" update-ca-certificates >/dev/null')
    with tempfile.TemporaryDirectory(prefix="dockyard-pybase-") as tmp:
        # Written to a file first: a bootstrap that fails or is killed is never imported.
        tarball = Path(tmp) / "root.tar"
        strap = subprocess.run(
            ["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
             "--dpkgopt=path-exclude=/usr/share/locale/*", f"--customize-hook={hook}",
             "trixie", str(tarball)], capture_output=True, text=True, timeout=900, check=False)
        if strap.returncode != 0:
            pytest.fail(f"building {PY_BASE} failed (mmdebstrap {strap.returncode}):\n"
                        f"{strap.stderr[-3000:]}")
        imported = _docker("import", "--change", "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                           "--change", 'CMD ["python3"]', str(tarball), PY_BASE, timeout=900)
    if imported.returncode != 0:
        _docker("rmi", "-f", PY_BASE, timeout=60)
        pytest.fail(f"importing {PY_BASE} failed:\n{imported.stderr}")
    return PY_BASE


def build_image(tag: str = IMAGE) -> str:
    """docker build -f infra/Dockerfile from the local base; returns the tag."""
    require_docker()
    base = ensure_python_base()
    env = dict(os.environ)
    if _docker("buildx", "version", timeout=30).returncode != 0:
        env["DOCKER_BUILDKIT"] = "0"  # no buildx plugin: the classic builder

    def build_stages() -> set[str]:
        return set(_docker("images", "-q", "--no-trunc", "--filter", "dangling=true", "--filter",
                           "label=dockyard.stage=build", timeout=60).stdout.split())

    def image_id() -> str:
        return _docker("image", "inspect", "-f", "{{.Id}}", tag, timeout=60).stdout.strip()

    before, stages_before = image_id(), build_stages()
    proc = _docker("build", "-q", "-f", str(DOCKERFILE), "--build-arg", f"BASE={base}",
                   "-t", tag, str(REPO), timeout=1200, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # One image and one build cache, not one per source change: once the image changed, the
    # image it replaced and the older build stages go (anything still in use stays).
    if before and before != image_id():
        for image in [before, *(stages_before & build_stages())]:
            _docker("rmi", image, timeout=120)
    return tag


IN_IMAGE = r"""
set -e
test "$(id -u)" != 0
test ! -e /src
command -v dockyard caddy nats-server >/dev/null
python - <<'EOF'
import importlib.metadata as md, json
dist = md.distribution("dockyard")
direct = dist.read_text("direct_url.json")
assert direct is None or not json.loads(direct).get("dir_info", {}).get("editable"), direct
EOF
"""


@pytest.mark.timeout(1800)
def test_the_image_builds_and_holds_a_regular_install() -> None:
    """Built for real (FROM the local base): non-root, no source tree, every module imports,
    data files present, not an editable install, and `dockyard service` is its command."""
    tag = build_image()
    proc = _docker("run", "--rm", "--entrypoint", "sh", tag, "-c", IN_IMAGE, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = "import sys; sys.argv[1:] = ['/opt/dockyard']\n" + CHECK_INSTALLED
    proc = _docker("run", "--rm", "--entrypoint", "python", tag, "-c", check, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inspect = json.loads(_docker("image", "inspect", tag, timeout=60).stdout)[0]["Config"]
    assert inspect["Entrypoint"] == ["dockyard"] and inspect["Cmd"] == ["service", "api"]
    assert inspect["User"] not in ("", "root", "0")
    proc = _docker("run", "--rm", tag, "service", "--help", timeout=120)
    assert proc.returncode == 0 and "builder" in proc.stdout, proc.stdout + proc.stderr
