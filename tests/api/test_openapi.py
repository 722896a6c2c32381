"""The OpenAPI document: current in schemas/, served by the api, and every operation in it
fuzzed by schemathesis against a running stack (`dockyard up` in a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from dockyard import schemagen
from dockyard.api.http import openapi_document
from dockyard.bus.embedded import free_port

DOCKYARD = str(Path(sys.executable).parent / "dockyard")
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance, checks.negative_data_rejection,
          checks.ignored_auth]


@schemathesis.serializer("application/gzip")
def _gzip_body(ctx: Any, value: Any) -> bytes:
    """The deploy body is raw bytes (an archive); the fuzzer's are never a valid one."""
    del ctx
    data = getattr(value, "data", value)
    return data if isinstance(data, bytes) else str(data).encode()


def _has_constraints(item: dict[str, Any]) -> bool:
    """Whether an operation has input that can be made invalid (a JSON body, a typed query)."""
    body = item.get("requestBody", {}).get("content", {})
    typed = [p for p in item.get("parameters", [])
             if p["in"] == "query" and p.get("schema", {}).get("type") not in (None, "string")]
    return "application/json" in body or bool(typed)


def test_the_committed_document_is_current() -> None:
    assert json.loads(schemagen.OPENAPI.read_text()) == openapi_document(), (
        "run `python -m dockyard.schemagen` and commit schemas/openapi.json")


@dataclass
class Api:
    """A running stack's api."""

    url: str
    token: str


def _up(data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env |= {"DOCKYARD_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [DOCKYARD, "up", "--data-dir", str(data_dir), "--http-port", str(free_port()),
         "--runtime", "process"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)


@pytest.fixture(scope="module")
def stack_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """`dockyard up` in its own process (the fuzzer calls it synchronously), stopped after."""
    data_dir = tmp_path_factory.mktemp("openapi-stack")
    proc = _up(data_dir)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"dockyard up exited {proc.returncode}: "
                                     f"{(proc.stderr.read() if proc.stderr else b'').decode()}")
            url_file, token_file = data_dir / "api.url", data_dir / "api.token"
            if url_file.exists() and token_file.exists():
                url = url_file.read_text().strip()
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            assert time.monotonic() < deadline, "the stack's api did not answer within 60s"
            time.sleep(0.2)
        yield Api(url=url, token=token_file.read_text().strip())
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture(scope="module")
def api_schema(stack_api: Api) -> Any:
    """The document the running api serves (fetched with its token), aimed at it."""
    served = httpx.get(f"{stack_api.url}/openapi.json", timeout=10,
                       headers={"Authorization": f"Bearer {stack_api.token}"})
    assert served.status_code == 200, served.text
    assert served.json() == openapi_document()
    schema = schemathesis.openapi.from_dict(served.json())
    schema.config.update(base_url=stack_api.url,
                         headers={"Authorization": f"Bearer {stack_api.token}"},
                         request_timeout=30)
    return schema


# One test per operation of the document (schemathesis's own pytest fixture loader does not
# run on pytest 9, so each operation's cases come from its hypothesis strategy here).
OPERATIONS = [(f"{method.upper()} {path}", operation)
              for path, methods in openapi_document()["paths"].items()
              for method, operation in methods.items()]
# Positive cases for every operation; negative ones where some input has a type to break (an
# unconstrained string has no invalid value).
CASES = [pytest.param(label, GenerationMode.POSITIVE, id=f"positive {label}")
         for label, _ in OPERATIONS] + [
         pytest.param(label, GenerationMode.NEGATIVE, id=f"negative {label}")
         for label, item in OPERATIONS if _has_constraints(item)]


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_every_operation_answers_as_documented(api_schema: Any, label: str,
                                               mode: GenerationMode) -> None:
    """With the token: no 5xx, every status code,
    content type, body and header as the document says; invalid input refused; auth enforced."""
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    run()
