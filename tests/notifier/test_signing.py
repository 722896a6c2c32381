"""Standard Webhooks signing and verification."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from dockyard.notifier.errors import InvalidSignature
from dockyard.notifier.signing import secret_bytes, sign, verify, webhook_headers

KEY = b"\x01\x02dockyard-test-key\xff"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
BODY = b'{"type":"dockyard.deploy.queued","id":"d1:deploy.queued"}'
TS = 1_700_000_000


def test_signature_matches_an_independent_hmac() -> None:
    by_hand = hmac.new(KEY, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert sign(SECRET, "msg_1", TS, BODY) == "v1," + base64.b64encode(by_hand).decode()


def test_signature_matches_the_spec_vector() -> None:
    # The example published with the Standard Webhooks specification.
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_raw_secret_is_used_as_utf8_bytes() -> None:
    assert secret_bytes("plain-sécret") == "plain-sécret".encode()
    by_hand = hmac.new(b"raw", b"m.1.{}", hashlib.sha256).digest()
    assert sign("raw", "m", 1, b"{}") == "v1," + base64.b64encode(by_hand).decode()


def test_bad_base64_secret_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        secret_bytes("whsec_not base64!")


def test_round_trip_verifies() -> None:
    headers = webhook_headers(SECRET, "msg_1", BODY, TS)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    verify(SECRET, headers, BODY, now=TS + 10)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in webhook_headers(SECRET, "msg_1", BODY, TS).items()}
    verify(SECRET, headers, BODY, now=TS)


def test_one_of_several_signatures_is_enough() -> None:
    headers = webhook_headers(SECRET, "msg_1", BODY, TS)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    verify(SECRET, headers, BODY, now=TS)


def test_tampered_body_is_rejected() -> None:
    headers = webhook_headers(SECRET, "msg_1", BODY, TS)
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify(SECRET, headers, BODY.replace(b"queued", b"failed"), now=TS)


def test_other_secret_is_rejected() -> None:
    headers = webhook_headers(SECRET, "msg_1", BODY, TS)
    with pytest.raises(InvalidSignature):
        verify("whsec_" + base64.b64encode(b"other").decode(), headers, BODY, now=TS)


def test_stale_and_future_timestamps_are_rejected() -> None:
    headers = webhook_headers(SECRET, "msg_1", BODY, TS)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify(SECRET, headers, BODY, now=TS + 301)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify(SECRET, headers, BODY, now=TS - 301)


def test_missing_signature_is_rejected() -> None:
    headers = webhook_headers(None, "msg_1", BODY, TS)
    assert "webhook-signature" not in headers
    with pytest.raises(InvalidSignature, match="missing header webhook-signature"):
        verify(SECRET, headers, BODY, now=TS)
