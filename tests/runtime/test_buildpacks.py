"""Build helpers both runtimes share: step errors, cache keys, relocated venv scripts, PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dockyard.contract.plan import Buildpack, BuildStep
from dockyard.runtime.buildpacks import (
    BuildStepFailed,
    ReleaseEnv,
    cache_key,
    first_error,
    installed_pythons,
    installer_env,
    release_env,
    relocate_scripts,
)

BUILD = Buildpack(language="python", lock_files=["requirements.txt"], deps_dir=".venv",
                  steps=[BuildStep(label="Install", kind="python-requirements")])


def test_first_error_picks_the_sentence_that_says_what_went_wrong() -> None:
    npm = ["npm error code EUSAGE", "npm error",
           "npm error `npm ci` can only install packages when your package.json and "
           "package-lock.json are in sync.", "npm error A complete log ..."]
    assert first_error(npm).startswith("npm error `npm ci` can only install")
    assert first_error(["\x1b[31mERROR: No matching distribution\x1b[0m", "\x1b[0m"]) == (
        "ERROR: No matching distribution")
    assert first_error(["one", "two", ""]) == "two"
    assert first_error([]) == ""
    step = BuildStep(label="npm ci", kind="npm-ci", file="package-lock.json")
    assert str(BuildStepFailed(step, 1, "out of sync")) == (
        "package-lock.json: npm ci failed (exit code 1): out of sync")


def test_cache_key_follows_the_lock_files_and_the_tool(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flask==3.0.3\n")
    key = cache_key(BUILD, tmp_path, "python 3.11.2 uv")
    (tmp_path / "app.py").write_text("changed source\n")
    assert cache_key(BUILD, tmp_path, "python 3.11.2 uv") == key
    assert cache_key(BUILD, tmp_path, "python 3.12.1 uv") != key
    (tmp_path / "requirements.txt").write_text("flask==3.0.4\n")
    assert cache_key(BUILD, tmp_path, "python 3.11.2 uv") != key
    assert key.startswith("python-") and len(key) == len("python-") + 32


def test_relocated_scripts_run_the_venv_of_the_copy_they_are_in(tmp_path: Path) -> None:
    venv = tmp_path / "one" / ".venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    script = venv / "bin" / "hello"
    script.write_text(f"#!{venv}/bin/python\nimport sys\nprint(sys.prefix)\n")
    script.chmod(0o755)
    assert relocate_scripts(venv / "bin") == 1
    assert relocate_scripts(venv / "bin") == 0  # already relocated
    copy = tmp_path / "two"
    subprocess.run(["cp", "-a", str(tmp_path / "one"), str(copy)], check=True)
    out = subprocess.run([str(copy / ".venv" / "bin" / "hello")], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == str(copy / ".venv")


def test_release_env_puts_the_copy_bin_dirs_first_and_config_wins() -> None:
    release = ReleaseEnv(env={"WEB_CONCURRENCY": "2", "NODE_ENV": "production"},
                         path=[".venv/bin"])
    env = release_env({"PATH": "/usr/bin:/bin", "WEB_CONCURRENCY": "8"}, release,
                      Path("/apps/shop/work/release-1-ab"))
    assert env == {"WEB_CONCURRENCY": "8", "NODE_ENV": "production",
                   "PATH": "/apps/shop/work/release-1-ab/.venv/bin:/usr/bin:/bin"}
    assert release_env({"PATH": "/bin"}, ReleaseEnv(), Path("/x")) == {"PATH": "/bin"}


def test_installer_env_and_installed_pythons() -> None:
    assert installer_env({"SSL_CERT_FILE": "/ca.pem", "SECRET": "x", "HTTPS_PROXY": ""}) == {
        "SSL_CERT_FILE": "/ca.pem"}
    found = installed_pythons(["/usr/bin"])
    assert found and all(os.path.basename(p).startswith("python3.") for p, _ in found)
    assert installed_pythons(["/nonexistent"]) == []
