"""Standard Webhooks signing: webhook-id, webhook-timestamp, webhook-signature ("v1,<b64 hmac>")."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from dockyard.notifier.errors import InvalidSignature

SECRET_PREFIX = "whsec_"
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
# The spec recommends rejecting timestamps this far from now, against replays.
TOLERANCE = 300


def secret_bytes(secret: str) -> bytes:
    """Key bytes of a secret: base64 after `whsec_`, else the raw string as UTF-8."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except binascii.Error:
            raise InvalidSignature("secret after whsec_ is not valid base64") from None
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_headers(secret: str | None, msg_id: str, body: bytes,
                    timestamp: int | None = None) -> dict[str, str]:
    """Headers of one delivery: id and timestamp always, the signature when there is a secret."""
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {HEADER_ID: msg_id, HEADER_TIMESTAMP: str(ts)}
    if secret:
        headers[HEADER_SIGNATURE] = sign(secret, msg_id, ts, body)
    return headers


def verify(secret: str, headers: Mapping[str, str], body: bytes, *,
           tolerance: int = TOLERANCE, now: float | None = None) -> None:
    """Raise InvalidSignature unless headers carry a fresh, matching v1 signature of body."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower[HEADER_ID]
        raw_ts = lower[HEADER_TIMESTAMP]
        signatures = lower[HEADER_SIGNATURE]
    except KeyError as missing:
        raise InvalidSignature(f"missing header {missing.args[0]}") from None
    try:
        timestamp = int(raw_ts)
    except ValueError:
        raise InvalidSignature(f"timestamp {raw_ts!r} is not a number") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature("timestamp outside the tolerance window")
    expected = sign(secret, msg_id, timestamp, body)
    # The header may carry several space-separated signatures (e.g. during secret rotation).
    for candidate in signatures.split():
        if hmac.compare_digest(candidate, expected):
            return
    raise InvalidSignature("no signature matches")
