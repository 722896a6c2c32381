"""Notification sinks as stored: what is valid (names in one accepted form, checked whole, and
every sink that could not be delivered to refused when it is added), secrets in their whsec_ form
(the one the official library takes), adding, replacing, removing."""

from __future__ import annotations

import base64
import re
import time

import pytest
from standardwebhooks.webhooks import Webhook

from dockyard.contract.sinks import (
    DEFAULT_EVENTS,
    GLOBAL_SINK,
    MAX_ATTEMPTS,
    MAX_TIMEOUT,
    InvalidSink,
    Sink,
    SinkNotFound,
    Sinks,
    validate,
    webhook_secret,
    with_sink,
    without_sink,
)
from dockyard.notifier.signing import webhook_headers

URL = "https://hooks.example.com/x"
# A whsec_ secret must be base64 (whsec_ + "secret"): stored as given.
OPS = Sink(name="ops", url=URL, secret="whsec_c2VjcmV0")


def test_a_good_sink_is_itself_and_hears_the_default_events() -> None:
    assert validate(OPS) == OPS
    assert OPS.events == list(DEFAULT_EVENTS)
    assert "dockyard.deploy.failed" in DEFAULT_EVENTS
    assert validate(Sink(name="a-b_1", url="http://127.0.0.1:9/x", kind="slack", timeout=20))


@pytest.mark.parametrize(("sink", "problem"), [
    (Sink(name="", url="https://x"), "name must be 1-64 of letters, digits, - and _"),
    (Sink(name="-x", url="https://x"), "name must be"),
    (Sink(name="a.b", url="https://x"), "name must be"),
    (Sink(name="x" * 65, url="https://x"), "name must be"),
    # `$` alone would let a trailing newline through into events and logs.
    (Sink(name="ops\n", url="https://x"), "name must be"),
    (Sink(name="x", url="https://x", kind="email"), "kind must be webhook or slack"),  # type: ignore[arg-type]
    (Sink(name="x", url="ftp://x/y"), "url must be an absolute http(s) URL"),
    (Sink(name="x", url="/relative"), "url must be an absolute http(s) URL"),
    (Sink(name="x", url="https://x", events=[]), "events must list at least one pattern"),
    (Sink(name="x", url="https://x", max_attempts=0),
     f"max_attempts must be from 1 to {MAX_ATTEMPTS}"),
    (Sink(name="x", url="https://x", backoff=0), "backoff must be positive"),
    (Sink(name="x", url="https://x", timeout=MAX_TIMEOUT + 1), "timeout in"),
    (Sink(name="x", url="https://x", timeout=0), "timeout in"),
])
def test_a_bad_sink_is_refused_saying_why(sink: Sink, problem: str) -> None:
    with pytest.raises(InvalidSink, match=re.escape(problem)) as refused:
        validate(sink)
    assert refused.value.name == sink.name


def test_adding_replaces_by_name_and_keeps_the_others() -> None:
    chat = Sink(name="chat", url="https://chat.example.com/y", kind="slack")
    moved = Sink(name="ops", url="https://hooks.example.com/moved")
    current = with_sink(with_sink(Sinks(), OPS), chat)
    assert current == Sinks(sinks=[OPS, chat])
    assert with_sink(current, moved) == Sinks(sinks=[chat, moved])


def test_adding_refuses_an_invalid_or_reserved_sink() -> None:
    with pytest.raises(InvalidSink, match="url must be"):
        with_sink(Sinks(), Sink(name="x", url="nope"))
    with pytest.raises(InvalidSink, match="reserved for the sink from settings"):
        with_sink(Sinks(), Sink(name=GLOBAL_SINK, url="https://x"))


def test_removing_by_name_or_saying_there_is_none() -> None:
    current = Sinks(sinks=[OPS])
    assert without_sink(current, "shop", "ops") == Sinks()
    with pytest.raises(SinkNotFound, match="app 'shop' has no sink named 'chat'") as missing:
        without_sink(current, "shop", "chat")
    assert (missing.value.app, missing.value.name) == ("shop", "chat")


def test_a_sink_never_shows_its_secret_or_url_path() -> None:
    shown = repr(Sink(name="chat", url="https://hooks.slack.com/services/T0/B0/SECRETPATH",
                      secret="whsec_hidden", kind="slack"))
    assert shown == "Sink(name='chat', kind='slack', host='hooks.slack.com')"


@pytest.mark.parametrize("name", ["ops\n", "", "-ops", "o" * 65, "ops/x", "ops>"])
def test_sink_names_out_of_form_are_refused(name: str) -> None:
    # "ops\n" passed the `^...$` regex before: `$` matches before a trailing newline.
    with pytest.raises(InvalidSink, match="name must be 1-64 of letters, digits, - and _"):
        validate(Sink(name=name, url="https://hooks.example.com/x"))


def test_a_sink_name_in_form_passes() -> None:
    sink = Sink(name="ops_2-a", url="https://hooks.example.com/x")
    assert validate(sink) is sink


@pytest.mark.parametrize(("secret", "problem"), [
    # The reported attack: `notify add ... --secret whsec_dGVzdA` was stored, then every event
    # failed to sign 20 times and was dead-lettered.
    ("whsec_dGVzdA", "secret: what follows whsec_ is not valid base64 (Incorrect padding; add the"
                     " '=' padding); to use a plain string as the key, give it without whsec_"),
    ("whsec_!!!!", "secret: what follows whsec_ is not valid base64 (Only base64 data is allowed);"
                   " to use a plain string as the key, give it without whsec_"),
    ("whsec_", "secret: whsec_ must be followed by the key in base64"),
    ("", "secret must not be empty (leave it out for unsigned events)"),
    ("  ", "secret must not be empty (leave it out for unsigned events)"),
])
def test_a_secret_that_cannot_sign_is_refused(secret: str, problem: str) -> None:
    with pytest.raises(InvalidSink) as info:
        validate(Sink(name="ops", url=URL, secret=secret))
    assert info.value.problem == problem
    # Refusals can reach logs and events: they describe the secret, never quote it.
    key = secret.removeprefix("whsec_").strip()
    assert not key or key not in str(info.value)


@pytest.mark.parametrize(("given", "stored"), [
    ("s1", "whsec_" + base64.b64encode(b"s1").decode()),
    ("pässwörd with spaces", "whsec_" + base64.b64encode("pässwörd with spaces".encode()).decode()),
    ("dGVzdA==", "whsec_ZEdWemRBPT0="),  # plain, even when it looks like base64
    ("whsec_dGVzdA==", "whsec_dGVzdA=="),
])
def test_secrets_are_stored_in_whsec_form(given: str, stored: str) -> None:
    assert webhook_secret("ops", given) == stored
    assert validate(Sink(name="ops", url=URL, secret=given)).secret == stored
    assert with_sink(Sinks(), Sink(name="ops", url=URL, secret=given)).sinks[0].secret == stored


def test_the_official_library_verifies_a_plain_secrets_signature() -> None:
    """What `notify add --secret s1` shows is what `Webhook(...)` takes, as its docs show."""
    stored = webhook_secret("ops", "s1")
    body = b'{"type":"dockyard.deploy.succeeded"}'
    headers = webhook_headers(stored, "msg_1", body, int(time.time()))
    assert Webhook(stored).verify(body, headers) == {"type": "dockyard.deploy.succeeded"}
    # Signed with the plain string's bytes: the same key as before secrets were stored as whsec_.
    assert headers == webhook_headers("s1", "msg_1", body, int(headers["webhook-timestamp"]))


@pytest.mark.parametrize(("sink", "problem"), [
    (Sink(name="a", url="http://[::1/x"), "url is not a valid URL (Invalid IPv6 URL)"),
    (Sink(name="a", url="http://h:99999/x"), "url is not a valid URL"),
    (Sink(name="a", url="http://exa mple.com/x"), "url must not hold spaces or control"),
    (Sink(name="a", url="http:///x"), "url must be an absolute http(s) URL"),
    (Sink(name="a", url=URL, max_attempts=MAX_ATTEMPTS + 1),
     f"max_attempts must be from 1 to {MAX_ATTEMPTS}"),
    (Sink(name="a", url=URL, kind="slack", secret="s"), "a slack sink is not signed"),
])
def test_sinks_that_could_never_deliver_are_refused(sink: Sink, problem: str) -> None:
    with pytest.raises(InvalidSink) as info:
        validate(sink)
    assert info.value.problem.startswith(problem)


def test_a_valid_sink_is_kept_as_is() -> None:
    sink = Sink(name="ops", url=URL, max_attempts=MAX_ATTEMPTS, secret="whsec_dGVzdA==")
    assert validate(sink) == sink
    unsigned = Sink(name="chat", kind="slack", url=URL)
    assert validate(unsigned) == unsigned
