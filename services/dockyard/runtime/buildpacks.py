"""What both runtimes need to build a detected app: tools, cache keys, step errors, release env."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from dockyard.contract.plan import Buildpack, BuildStep
from dockyard.plan import node, python
from dockyard.runtime.base import BuildError

DEFAULT_PYTHON_DIRS = ("/usr/local/bin", "/usr/bin")
_PYTHON_NAME = re.compile(r"^python3\.\d+$")
_ERRORISH = re.compile(r"\b(error|ERROR|Error|ERR!)\b")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Host settings an installer needs to reach the package index as the host does (the CA
# bundle a TLS-inspecting proxy requires, the proxy itself): paths and addresses, no secrets.
INSTALLER_HOST_KEYS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "PIP_CERT", "REQUESTS_CA_BUNDLE",
                       "NODE_EXTRA_CA_CERTS", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY",
                       "https_proxy", "http_proxy", "no_proxy")
# Bumped when what a cached dependency dir holds changes shape.
CACHE_FORMAT = "1"


class BuildStepFailed(BuildError):
    """A detected build's step failed: the file it reads and what went wrong."""

    def __init__(self, step: BuildStep, exit_code: int, detail: str) -> None:
        self.step = step
        self.exit_code = exit_code
        self.detail = detail
        where = f"{step.file}: " if step.file else ""
        said = f": {detail}" if detail else ""
        super().__init__(f"{where}{step.label} failed (exit code {exit_code}){said}")


class MissingTool(BuildError):
    """The interpreter or tool a detected build needs is not installed (or not the version)."""


class ReleaseEnv(msgspec.Struct, frozen=True, kw_only=True):
    """What a release's processes get besides their config: conventions and PATH dirs."""

    env: dict[str, str] = {}
    path: list[str] = []


def installer_env(host: Mapping[str, str]) -> dict[str, str]:
    """The host's INSTALLER_HOST_KEYS that are set."""
    return {k: host[k] for k in INSTALLER_HOST_KEYS if host.get(k)}


def first_error(lines: Sequence[str]) -> str:
    """The line of a failed step's output that says what went wrong (else its last line)."""
    meaningful = [text for line in lines if (text := _ANSI.sub("", line).strip())]
    errors = [line for line in meaningful if _ERRORISH.search(line)]
    # npm says `npm error code EUSAGE` before the sentence that explains it.
    for line in errors:
        if len(line.split()) > 6:
            return line[:500]
    if errors:
        return errors[0][:500]
    return meaningful[-1][:500] if meaningful else ""


def cache_key(build: Buildpack, source: Path, tool: str) -> str:
    """The key of a dependency install: the lock files' bytes, the steps, the tool making it."""
    digest = hashlib.sha256()
    installing = [s for s in build.steps if s.installs]
    for part in (CACHE_FORMAT, build.language, tool, msgspec.json.encode(installing).decode()):
        digest.update(part.encode() + b"\0")
    for name in build.lock_files:
        path = source / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
        digest.update(b"\0")
    return f"{build.language}-{digest.hexdigest()[:32]}"


def reachable(path: Path) -> bool:
    """Whether any user can run the program at path (every dir above searchable by others)."""
    try:
        resolved = path.resolve(strict=True)
    except OSError:
        return False
    for candidate in (path, resolved):
        for parent in candidate.parents:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
    return bool(os.stat(resolved).st_mode & stat.S_IXOTH)


def find_uv(host_path: str) -> str | None:
    """uv on the host's PATH or beside Dockyard's own interpreter, if apps' users can run it."""
    candidates = [shutil.which("uv", path=host_path), str(Path(sys.executable).parent / "uv")]
    for found in candidates:
        if found and Path(found).is_file() and reachable(Path(found)):
            return found
    return None


def python_version(path: str) -> str | None:
    """An interpreter's version (`3.11.2`), None when it does not run."""
    try:
        proc = subprocess.run([path, "-c", "import platform; print(platform.python_version())"],
                              capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def installed_pythons(dirs: Sequence[str]) -> list[tuple[str, str]]:
    """(path, version) of every `python3.N` in dirs that apps' users can run."""
    found: dict[str, tuple[str, str]] = {}
    for folder in dirs:
        base = Path(folder)
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            if not _PYTHON_NAME.match(entry.name) or not reachable(entry):
                continue
            real = str(entry.resolve())
            if real in found:
                continue
            version = python_version(str(entry))
            if version is not None:
                found[real] = (str(entry), version)
    return list(found.values())


def choose_python(build: Buildpack, dirs: Sequence[str]) -> str:
    """The interpreter of a Python build, or MissingTool naming the file and what there is."""
    asked = (build.version, build.version_file or "") if build.version else None
    try:
        return python.choose_interpreter(asked, installed_pythons(dirs))
    except LookupError as exc:
        raise MissingTool(f"{exc} (looked in {', '.join(dirs)})") from None


def node_version(host_path: str) -> tuple[str, str]:
    """(node's path, its version) on the host, or MissingTool."""
    found = shutil.which("node", path=host_path)
    if found is None:
        raise MissingTool("package.json: a Node.js app needs node, and none is on the PATH")
    proc = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30,
                          check=False)
    return found, proc.stdout.strip()


def check_node(build: Buildpack, version: str) -> None:
    """MissingTool when the node there is does not satisfy engines.node."""
    if build.version is not None and (why := node.check_engine(build.version, version)):
        raise MissingTool(why)


TRAMPOLINE = ("#!/bin/sh\n"
              "'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")\"/'{name}' \"$0\" \"$@\"\n"
              "' '''\n")


def relocate_scripts(bin_dir: Path) -> int:
    """Rewrite scripts whose `#!` names an interpreter in bin_dir to find it relative to
    themselves (what uv's --relocatable does), so a copy of the venv runs its own Python."""
    changed = 0
    prefix = f"#!{bin_dir}/".encode()
    for entry in bin_dir.iterdir() if bin_dir.is_dir() else []:
        if entry.is_symlink() or not entry.is_file():
            continue
        with entry.open("rb") as fh:
            head = fh.read(len(prefix) + 256)
        if not head.startswith(prefix):
            continue
        first, _, _ = head.partition(b"\n")
        name = first[len(prefix):].decode(errors="replace").strip()
        if "/" in name or " " in name or not name.startswith("python"):
            continue
        body = entry.read_bytes().split(b"\n", 1)[1]
        mode = entry.stat().st_mode
        entry.write_bytes(TRAMPOLINE.format(name=name).encode() + body)
        os.chmod(entry, stat.S_IMODE(mode))
        changed += 1
    return changed


def release_env(env: Mapping[str, str], release: ReleaseEnv, cwd: Path) -> dict[str, str]:
    """An env with a release's conventions under it and its bin dirs (of the copy it runs in,
    cwd) first on PATH; what env already says wins, PATH included when the app's config sets it."""
    out = {**release.env, **env}
    dirs = [str(cwd / d) for d in release.path]
    if dirs:
        out["PATH"] = ":".join([*dirs, out.get("PATH") or os.defpath])
    return out
