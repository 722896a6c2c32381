"""Deploy output: lines published live on dockyard.log.<deployment_id>,
kept by JetStream, redacted, bounded."""

from __future__ import annotations

import base64
import functools
import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote, urlsplit

import structlog
from ahocorasick_rs import AhoCorasick, MatchKind
from nats.aio.client import Client

from dockyard.contract import codec, subjects
from dockyard.contract.events import TAIL_LINES, LogLine

log = structlog.get_logger()

REDACTED = "[REDACTED]"
# Shorter values ("1", "on", "no") are not secrets and would shred every line they occur in.
MIN_SECRET_LENGTH = 3
# A base64 fragment shorter than this occurs in ordinary words.
MIN_ENCODED_LENGTH = 8
# `base64` wraps its output at 76 columns, PEM and openssl at 64.
WRAP_WIDTHS = (64, 76)
# URL user names that say nothing about anyone (redacting them would shred ordinary text).
TRIVIAL_USERS = frozenset({"root", "admin", "user", "postgres", "mysql", "redis", "default",
                           "guest", "app", "web", "www", "test", "rabbitmq", "mongo", "sa"})

# A line is cut here once redacted: far below the bus's 1 MB payload, JSON escapes included.
LINE_MAX_BYTES = 64 * 1024
# What an event keeps of a command's output: its last lines, each cut, all within this.
TAIL_LINE_BYTES = 1024
TAIL_BYTES = 16 * 1024
# A reason (one sentence, maybe with a few lines of output) in an event.
REASON_BYTES = 4 * 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
# Carried on every line: how many bytes the deployment's log holds, so the next writer (another
# phase, another service) goes on counting from there.
USED_HEADER = "Dockyard-Log-Bytes"


def cut(text: str, limit: int) -> str:
    """The text, at most `limit` UTF-8 bytes of it, saying how much was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    marker = f" [… {len(data) - limit:,} bytes cut]"
    return data[:max(limit - len(marker.encode()), 0)].decode(errors="ignore") + marker


def _aligned(encode: Callable[[bytes], bytes], raw: bytes, shift: int) -> str:
    """The base64 characters of `raw` that stay the same wherever it sits in a longer text
    encoded as a whole, for a start `shift` bytes past a 3-byte boundary."""
    encoded = encode(bytes(shift) + raw).decode()
    start = -(-8 * shift // 6)
    end = 8 * (shift + len(raw)) // 6
    return encoded[start:end]


def _base64_forms(raw: bytes) -> set[str]:
    """The value's base64: whole, in the pieces `base64` wraps it into, and the part that
    stays the same inside any longer encoded text (short pieces would hit ordinary words)."""
    wholes: set[str] = set()
    pieces: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        wholes.add(whole)
        pieces.add(whole.rstrip("="))
        pieces.update(_aligned(encode, raw, shift) for shift in range(3))
        for width in WRAP_WIDTHS:
            if len(whole) > width:
                pieces.update(whole[i:i + width] for i in range(0, len(whole), width))
    return wholes | {p for p in pieces if len(p) >= MIN_ENCODED_LENGTH}


def _url_forms(value: str) -> set[str]:
    """The user and password of a URL inside the value (`postgres://user:pw@host/db`)."""
    forms: set[str] = set()
    for word in value.split():
        if "://" not in word or "@" not in word:
            continue
        try:
            parts = urlsplit(word)
            user, password = parts.username, parts.password
        except ValueError:
            continue
        if password:
            for pw in {password, unquote(password)}:
                forms.add(f":{pw}@")  # in its place even when short
                if len(pw) >= MIN_SECRET_LENGTH:
                    forms.add(pw)
            if user:
                forms |= _base64_forms(f"{unquote(user)}:{unquote(password)}".encode())
        if user and len(user) >= MIN_SECRET_LENGTH and unquote(user).lower() not in TRIVIAL_USERS:
            forms.update({user, unquote(user)})
    return forms


def secret_forms(value: str, name: str | None = None) -> set[str]:
    """Every form of a config value that must not leave: the value and each of its lines, its
    base64 (standard and URL-safe, alone, wrapped, or inside a longer encoded text such as
    `NAME=value`), its URL and JSON escapes, and the user and password of a URL in it."""
    if len(value) < MIN_SECRET_LENGTH:
        return set()
    forms = {value, quote(value), quote(value, safe=""), quote_plus(value),
             json.dumps(value)[1:-1]}
    forms.update(line for line in value.splitlines() if len(line.strip()) >= MIN_SECRET_LENGTH)
    forms |= _base64_forms(value.encode())
    if name:
        forms |= _base64_forms(f"{name}={value}".encode())
    forms |= _url_forms(value)
    return {f for f in forms if f}


@functools.lru_cache(maxsize=16)
def _forms(named: tuple[tuple[str | None, str], ...]) -> frozenset[str]:
    """Every form of every value (kept for the next phase of the same config)."""
    forms: set[str] = set()
    for name, value in named:
        forms |= secret_forms(value, name)
    return frozenset(forms)


class Redactor:
    """Replaces every form of every secret with [REDACTED]: one Aho-Corasick pass a line,
    the longest form at each place, whatever the number of secrets."""

    def __init__(self, secrets: Mapping[str, str] | Iterable[str] = ()) -> None:
        named = secrets.items() if isinstance(secrets, Mapping) else ((None, s) for s in secrets)
        forms = _forms(tuple(sorted(named, key=lambda kv: (kv[0] or "", kv[1]))))
        self.longest = max((len(f) for f in forms), default=0)
        self._automaton = (AhoCorasick(sorted(forms), matchkind=MatchKind.LeftmostLongest)
                           if forms else None)

    def __call__(self, text: str) -> str:
        """The text with every secret replaced."""
        return self.head(text, len(text))

    def head(self, text: str, keep: int) -> str:
        """The first `keep` characters of the text, redacted; exact when the text holds at least
        `longest` characters past them (a secret starting in them ends inside it)."""
        if self._automaton is None:
            return text[:keep]
        out: list[str] = []
        pos = 0
        for _, start, end in self._automaton.find_matches_as_indexes(text):
            if start >= keep:
                break
            out += [text[pos:start], REDACTED]
            pos = end
        if pos < keep:
            out.append(text[pos:keep])
        return "".join(out)


def redact(text: str, secrets: Mapping[str, str] | Iterable[str]) -> str:
    """Replace every form of every config value with [REDACTED]."""
    return Redactor(secrets)(text)


def heading(phase: str) -> str:
    """The heading that opens a phase's section of the deploy log."""
    return f"===== {phase} ====="


def subheading(label: str, index: int, total: int) -> str:
    """The heading that opens one command's section."""
    return f"----- {label} ({index}/{total}) -----"


def truncated(lines: int, limit: int) -> str:
    """The one line standing for the lines a deployment's log had no room for."""
    what = "1 line" if lines == 1 else f"{lines:,} lines"
    return (f"[… {what} truncated: this deployment's log reached its {limit:,}-byte limit "
            "(DOCKYARD_LOG_MAX_BYTES)]")


class ScrubbedError(Exception):
    """An error whose text went through the deploy log's redaction before going anywhere."""


class DeployLog:
    """A LogSink publishing one deployment's lines, redacted and within the deployment's byte
    budget; keeps the last lines for failure events, bounded in bytes."""

    def __init__(self, nc: Client, app: str, deployment_id: str, source: str,
                 secrets: Mapping[str, str] | Iterable[str] = (), *,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.nc = nc
        self.app = app
        self.deployment_id = deployment_id
        self.source = source
        self.secrets = secrets
        self.max_bytes = max_bytes
        self.used: int | None = None  # read from the log's last line on first use
        self.full = False
        self.dropped = 0
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.subject = subjects.log(deployment_id)

    @property
    def secrets(self) -> Redactor:
        """The redaction applied to every line (set it with a config: names to values)."""
        return self._redactor

    @secrets.setter
    def secrets(self, values: Mapping[str, str] | Iterable[str] | Redactor) -> None:
        self._redactor = values if isinstance(values, Redactor) else Redactor(values)

    def clean(self, text: str, limit: int = REASON_BYTES) -> str:
        """Text that may leave in an event: redacted, then cut."""
        return cut(self._redactor(text), limit)

    def scrub(self, exc: BaseException) -> ScrubbedError:
        """An error's text as it may leave in an event."""
        return ScrubbedError(self.clean(str(exc)))

    async def line(self, text: str, stream: str = "out") -> None:
        """Publish one line, unless the deployment's log is full (Dockyard's own lines always
        go out); the tail keeps it either way."""
        text = text.rstrip("\n")
        # Kept raw (redacted only if it is taken), long enough for Redactor.head.
        self.tail.append(text[:TAIL_LINE_BYTES + self._redactor.longest])
        if self.used is None:
            self.used = await self._used_so_far()
        system = stream == "system"
        if not system and (self.full or self.used + len(text.encode()) > self.max_bytes):
            self.full = True  # the rest of this output goes too: one gap, not many
            self.dropped += 1
            return
        if system and self.dropped:
            await self._say_truncated()
        await self._publish(self.clean(text, LINE_MAX_BYTES),
                            stream if stream in ("out", "err", "system") else "out")

    async def system(self, text: str) -> None:
        """A line written by Dockyard itself (headings, outcomes)."""
        await self.line(text, "system")

    def take_tail(self) -> list[str]:
        """The last lines written, redacted, cut, newest kept within TAIL_BYTES; and start a
        fresh tail (one per command)."""
        kept: list[str] = []
        room = TAIL_BYTES
        for raw in reversed(self.tail):
            text = cut(self._redactor.head(raw, TAIL_LINE_BYTES), TAIL_LINE_BYTES)
            size = len(text.encode()) + 1
            if size > room:
                break
            kept.append(text)
            room -= size
        self.tail.clear()
        return kept[::-1]

    async def flush(self) -> None:
        """Say how many lines found no room, and make sure every line reached the server."""
        if self.dropped:
            await self._say_truncated()
        await self.nc.flush()

    async def end(self, text: str, exit_code: int) -> None:
        """A one-off run's last line: the exit code on it, published once (a redelivered run
        publishes the same line again, and JetStream drops the copy by its id)."""
        if self.dropped:
            await self._say_truncated()
        await self._publish(self.clean(text, LINE_MAX_BYTES), "system", exit_code=exit_code,
                            msg_id=f"{self.deployment_id}:end")
        await self.nc.flush()

    async def _say_truncated(self) -> None:
        dropped, self.dropped = self.dropped, 0
        await self._publish(truncated(dropped, self.max_bytes), "system")

    async def _publish(self, text: str, stream: str, *, exit_code: int | None = None,
                       msg_id: str | None = None) -> None:
        # Core publish: the LOGS stream keeps it without a round trip per line.
        msg = LogLine(deployment_id=self.deployment_id, app=self.app, text=text,
                      stream=stream,  # type: ignore[arg-type]
                      source=self.source, exit_code=exit_code)
        self.used = (self.used or 0) + len(text.encode())
        headers = {USED_HEADER: str(self.used)}
        if msg_id is not None:
            headers["Nats-Msg-Id"] = msg_id
        await self.nc.publish(self.subject, codec.encode(msg), headers=headers)

    async def _used_so_far(self) -> int:
        """The bytes the deployment's log holds, as its last line says (0 for a new one)."""
        try:
            last = await self.nc.jetstream().get_last_msg(subjects.STREAM_LOGS, self.subject)
        except Exception as exc:  # none yet, or not readable: count from here
            log.debug("deploy log starts its count", subject=self.subject, reason=repr(exc))
            return 0
        try:
            return int((last.headers or {}).get(USED_HEADER, 0))
        except ValueError:
            return 0
