"""Deploy logs: every form of a secret redacted in one pass, the log and the tail bounded."""

from __future__ import annotations

import asyncio
import base64
import uuid
from urllib.parse import quote

import msgspec
import pytest

from dockyard.bus.embedded import EmbeddedNats
from dockyard.bus.logs import (
    LINE_MAX_BYTES,
    REDACTED,
    TAIL_BYTES,
    TAIL_LINE_BYTES,
    DeployLog,
    Redactor,
    cut,
    redact,
    secret_forms,
    truncated,
)
from dockyard.bus.service import SERVICES, connect, declaration
from dockyard.contract import codec, subjects
from dockyard.contract.events import LogLine, new_id
from tests.conftest import Bus

TOKEN = "tok_9f8e7d6c5b4a?>~"  # its base64 has '+' and '/': the URL-safe form differs
DB_URL = "postgres://shopuser:Sup3r%2FS3cret@db.internal:5432/shop"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def urlsafe(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_the_value_itself_and_short_values() -> None:
    assert redact("token=tok_9f8e7d6c5b4a?>~ ok", [TOKEN]) == f"token={REDACTED} ok"
    assert redact("on and 1", ["on", "1", ""]) == "on and 1"


@pytest.mark.parametrize("leaked", [
    b64(TOKEN),
    b64(TOKEN).rstrip("="),
    urlsafe(TOKEN),
    b64(TOKEN + "\n"),  # echo "$TOKEN" | base64
    b64(f"API_TOKEN={TOKEN}"),  # printf 'API_TOKEN=%s' "$API_TOKEN" | base64
    b64(f"FOO=1\nAPI_TOKEN={TOKEN}\nBAR=2\n"),  # env | base64
    urlsafe(f"x{TOKEN}yz"),
    quote(TOKEN, safe=""),
    quote(TOKEN),
])
def test_encoded_forms_of_a_value_are_redacted(leaked: str) -> None:
    line = f"debug: {leaked} end"
    clean = redact(line, {"API_TOKEN": TOKEN})
    assert REDACTED in clean
    # No run of the value's encoding long enough to mean anything is left.
    core = base64.b64encode(TOKEN.encode()).decode()[2:12]
    assert core not in clean and TOKEN not in clean


def test_a_long_value_wrapped_by_base64_is_redacted_line_by_line() -> None:
    secret = "k" * 70 + "-private-key-material-" + "z" * 40
    wrapped = base64.encodebytes(secret.encode()).decode().splitlines()  # 76 columns
    assert len(wrapped) == 3
    for line in wrapped:
        assert redact(line, [secret]) == REDACTED


def test_each_line_of_a_multiline_value_is_redacted() -> None:
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"
    assert redact("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", [pem]) == REDACTED


def test_the_user_and_password_of_a_url_are_redacted() -> None:
    redactor = Redactor({"DATABASE_URL": DB_URL})
    assert redactor("password=Sup3r/S3cret") == f"password={REDACTED}"  # decoded
    assert redactor("password=Sup3r%2FS3cret") == f"password={REDACTED}"  # as in the URL
    assert redactor("connecting as shopuser") == f"connecting as {REDACTED}"
    assert redactor(f"Authorization: Basic {b64('shopuser:Sup3r/S3cret')}") == (
        f"Authorization: Basic {REDACTED}")
    assert redactor(DB_URL) == REDACTED


def test_a_trivial_user_and_a_short_password_are_redacted_only_in_place() -> None:
    redactor = Redactor(["postgres://postgres:pw@db/app"])
    assert redactor("user postgres, pw ok") == "user postgres, pw ok"
    assert redactor("postgres://postgres:pw@other/app") == f"postgres://postgres{REDACTED}other/app"


def test_forms_of_short_values_and_names() -> None:
    assert secret_forms("ab") == set()
    forms = secret_forms("s3cret-value", "KEY")
    assert {"s3cret-value", b64("s3cret-value"), b64("KEY=s3cret-value")} <= forms


def test_the_longest_form_wins_and_one_pass_handles_many_secrets() -> None:
    secrets = {f"K{i}": f"secret-{i:04d}-{uuid.uuid4().hex}" for i in range(200)}
    redactor = Redactor({**secrets, "SHORT": "abc", "LONG": "abcdef"})
    assert redactor("xabcdefx abcx") == f"x{REDACTED}x {REDACTED}x"
    text = " | ".join(secrets.values()) + " | " + b64(secrets["K7"])
    assert redactor(text) == " | ".join([REDACTED] * 201)


def test_head_is_exact_when_the_text_was_cut_after_it() -> None:
    secret = "s" * 50 + "-tail"
    redactor = Redactor([secret])
    text = "x" * 990 + secret + "y" * 100
    stored = text[:1000 + redactor.longest]
    assert redactor.head(stored, 1000) == "x" * 990 + REDACTED
    assert secret[:10] not in redactor.head(stored, 1000)


def test_cut_keeps_within_the_byte_limit_and_says_so() -> None:
    assert cut("short", 10) == "short"
    cut_text = cut("é" * 1000, 100)
    assert len(cut_text.encode()) <= 100 and cut_text.endswith("bytes cut]")


def test_the_truncation_line() -> None:
    assert truncated(1234, 16 * 1024 * 1024) == (
        "[… 1,234 lines truncated: this deployment's log reached its 16,777,216-byte limit "
        "(DOCKYARD_LOG_MAX_BYTES)]")


# ------------------------------------------------------------------ on a real nats-server


async def kept(bus: Bus, deployment_id: str) -> list[tuple[LogLine, dict[str, str]]]:
    """Every line the LOGS stream kept for a deployment, with its headers."""
    subject = subjects.log(deployment_id)
    info = await bus.js.stream_info(subjects.STREAM_LOGS, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    sub = await bus.js.subscribe(subject, ordered_consumer=True)
    found: list[tuple[LogLine, dict[str, str]]] = []
    try:
        while len(found) < count:
            msg = await sub.next_msg(timeout=10)
            found.append((codec.decode_as(msg.data, LogLine), dict(msg.headers or {})))
    finally:
        await sub.unsubscribe()
    return found


async def stored(bus: Bus, log: DeployLog) -> None:
    """Wait until the stream holds the log's last line (a core publish is stored a little
    after the server has it)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            last = await bus.js.get_last_msg(subjects.STREAM_LOGS, log.subject)
            if (last.headers or {}).get("Dockyard-Log-Bytes") == str(log.used):
                return
        except Exception:  # noqa: BLE001 (nats' NotFoundError: nothing stored yet)
            pass
        assert asyncio.get_running_loop().time() < deadline, "the last line was never stored"
        await asyncio.sleep(0.05)


async def test_lines_are_redacted_before_they_leave(bus: Bus) -> None:
    dep = new_id()
    log = DeployLog(bus.nc, "shop", dep, "test", {"API_TOKEN": TOKEN})
    await log.line(f"token is {TOKEN}")
    await log.line(f"encoded {b64('API_TOKEN=' + TOKEN)}", "err")
    await log.flush()
    await stored(bus, log)
    texts = [line.text for line, _ in await kept(bus, dep)]
    assert texts == [f"token is {REDACTED}", f"encoded {REDACTED}"]


async def test_a_deployments_log_is_capped_with_one_truncation_line(bus: Bus) -> None:
    dep = new_id()
    log = DeployLog(bus.nc, "shop", dep, "test", max_bytes=5000)
    await log.system("===== postdeploy =====")
    for i in range(1000):
        await log.line(f"{i:04d} " + "x" * 95)
    await log.system("----- Warm: exit code 0 -----")
    await log.flush()
    await stored(bus, log)
    # Another phase (another writer) of the same deployment goes on counting.
    later = DeployLog(bus.nc, "shop", dep, "test", max_bytes=5000)
    await later.line("more output")
    await later.system("===== after_switch =====")
    await later.flush()
    await stored(bus, later)
    lines = await kept(bus, dep)
    texts = [line.text for line, _ in lines]
    out = [t for t in texts if not t.startswith(("=====", "-----", "[…"))]
    # 22 bytes of heading, then 49 lines of 100 bytes fit in 5,000.
    assert len(out) == 49 and out[0].startswith("0000") and out[-1].startswith("0048")
    assert texts[50] == "[… 951 lines truncated: this deployment's log reached its 5,000-byte " \
                        "limit (DOCKYARD_LOG_MAX_BYTES)]"
    assert texts[51:] == ["----- Warm: exit code 0 -----", "[… 1 line truncated: this "
                          "deployment's log reached its 5,000-byte limit (DOCKYARD_LOG_MAX_BYTES)]",
                          "===== after_switch ====="]
    assert sum(len(t.encode()) for t in texts) < 5000 + 1000
    assert int(lines[-1][1]["Dockyard-Log-Bytes"]) == sum(len(t.encode()) for t in texts)


@pytest.mark.parametrize("service", [n for n in SERVICES if declaration(n).logs])
async def test_a_log_writing_service_goes_on_counting_as_its_own_identity(
        bus: Bus, nats_server: EmbeddedNats, service: str) -> None:
    """The byte count is read back (get_last_msg on LOGS) on the service's own connection:
    its permissions allow that read, so a later writer does not start again from 0."""
    nc = await connect(nats_server.url, f"dockyard-{service}", nats_server.credentials(service))
    try:
        dep = new_id()
        first = DeployLog(nc, "shop", dep, service, max_bytes=100)
        await first.line("x" * 60)
        await first.flush()
        await stored(bus, first)
        later = DeployLog(nc, "shop", dep, service, max_bytes=100)
        started = asyncio.get_running_loop().time()
        await later.line("y" * 60)  # 120 bytes in all: over the limit, dropped
        assert asyncio.get_running_loop().time() - started < 2  # an answer, not a timeout
        assert later.used == 60 and later.dropped == 1
        await later.flush()
    finally:
        await nc.drain()


async def test_a_huge_line_is_cut_once_redacted(bus: Bus) -> None:
    dep = new_id()
    log = DeployLog(bus.nc, "shop", dep, "test", [TOKEN])
    await log.line(TOKEN + "y" * (3 * LINE_MAX_BYTES))
    await log.flush()
    await stored(bus, log)
    [(line, _)] = await kept(bus, dep)
    assert line.text.startswith(REDACTED + "yyy") and line.text.endswith("bytes cut]")
    assert len(line.text.encode()) <= LINE_MAX_BYTES


async def test_the_tail_is_bounded_in_bytes_and_redacted(bus: Bus) -> None:
    log = DeployLog(bus.nc, "shop", new_id(), "test", {"API_TOKEN": TOKEN}, max_bytes=10)
    for i in range(30):
        await log.line(f"{i:02d} " + "z" * 60_000)
    await log.line("x" * (TAIL_LINE_BYTES - 8) + TOKEN)  # a secret across the cut
    await log.line(f"Error: bad token {b64(TOKEN)}")
    tail = log.take_tail()
    assert tail[-1] == f"Error: bad token {REDACTED}"
    assert all(len(t.encode()) <= TAIL_LINE_BYTES for t in tail)
    assert sum(len(t.encode()) + 1 for t in tail) <= TAIL_BYTES
    assert len(tail) == 16 and tail[0].startswith("16 zzz")
    assert TOKEN[:8] not in tail[-2]
    assert log.take_tail() == []
    encoded = msgspec.json.encode(tail)
    assert len(encoded) < 20_000


async def test_scrubbed_errors_carry_no_secret(bus: Bus) -> None:
    log = DeployLog(bus.nc, "shop", new_id(), "test", {"DATABASE_URL": DB_URL})
    exc = RuntimeError(f"web exited at once:\n{DB_URL}\nauth failed for shopuser" + "!" * 9000)
    scrubbed = str(log.scrub(exc))
    assert "shopuser" not in scrubbed and "Sup3r" not in scrubbed
    assert scrubbed.startswith(f"web exited at once:\n{REDACTED}\nauth failed for {REDACTED}")
    assert len(scrubbed.encode()) <= 4096


def test_no_short_base64_piece_shreds_ordinary_text() -> None:
    # 58 bytes: its base64 (80 characters) wraps at 76, leaving a 4-character last line.
    redactor = Redactor(["v" * 58])
    assert all(len(f) >= 8 or f.endswith("=") for f in secret_forms("v" * 58))
    assert redactor("a=b, c== d, dnY=") == "a=b, c== d, dnY="
