"""The FastStream broker every service uses: msgspec structs in,
dead letters instead of silent acks."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from fast_depends.exceptions import ValidationError as DependsValidationError
from fast_depends.msgspec import MsgSpecSerializer
from faststream import AckPolicy, BaseMiddleware
from faststream.exceptions import HandlerException
from faststream.message import StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.security import NatsNKey
from faststream.nats.subscriber.usecases.stream_pull_subscriber import PullStreamSubscriber
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard.bus import metrics, tracing
from dockyard.bus.auth import Credentials
from dockyard.bus.permissions import inbox_prefix
from dockyard.contract import codec, subjects
from dockyard.contract.events import (
    CancelRequested,
    DeployRequested,
    Event,
    Message,
    RunRequested,
    ScaleRequested,
)
from dockyard.contract.names import InvalidName, check_app, check_deployment_id

log = structlog.get_logger()

# After this many deliveries a message that keeps failing goes to the dead letters.
MAX_DELIVER = 20
ACK_WAIT = 30.0
CLOUDEVENTS_JSON = "application/cloudevents+json"
# The server's default max_payload, when the connection cannot tell its own.
MAX_PAYLOAD = 1024 * 1024
# Room for the headers, which count against the server's limit too.
HEADER_ROOM = 1024


class Rejected(Exception):
    """A handler refuses a well-formed message for good:
    it goes to the dead letters with this reason."""


class PayloadTooLarge(Rejected):
    """A message too big for the bus: refused before it is published, never retried."""

    def __init__(self, type_: str, size: int, limit: int) -> None:
        super().__init__(f"{type_} of {size} bytes exceeds the bus's {limit}-byte payload limit")
        self.type = type_
        self.size = size
        self.limit = limit


class SubjectMismatch(InvalidName):
    """An event published under another app's subject than the one it is about."""

    def __init__(self, subject: str, app: str) -> None:
        super().__init__("event subject", subject, f"does not name the event's app {app!r}")


def check_names(nats_subject: str, message: Message) -> Message:
    """The message, if its app and deployment id are in form and an event sits on its
    app's subject; InvalidName otherwise."""
    if isinstance(message, Event):
        check_app(message.subject)
        check_deployment_id(message.deployment_id)
        tokens = nats_subject.split(".")
        if len(tokens) < 3 or tokens[2] != message.subject:
            raise SubjectMismatch(nats_subject, message.subject)
    elif isinstance(message, DeployRequested | CancelRequested | ScaleRequested):
        check_app(message.app)
        check_deployment_id(message.deployment_id)
    elif isinstance(message, RunRequested):
        check_app(message.app)
        check_deployment_id(message.run_id)
    return message


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """What lands on dockyard.dlq.<service>: the original message and why it was rejected."""

    service: str
    subject: str
    reason: str
    payload: str
    headers: dict[str, str] = {}
    deliveries: int = 1
    time: datetime = msgspec.field(default_factory=lambda: datetime.now(UTC))


_DECODE_ERRORS = (DependsValidationError, msgspec.DecodeError, msgspec.ValidationError,
                  UnicodeDecodeError, ValueError)


def _reason(msg: StreamMessage[Any], exc: Exception) -> str:
    """A readable reason: msgspec's own words when the body is not a valid message at all."""
    body = msg.body if isinstance(msg.body, bytes) else bytes(msg.body)
    try:
        decoded = codec.decode_any(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        return f"undecodable: {err}"
    return f"not a {_expected(exc)} message: got {getattr(decoded, 'type', type(decoded).__name__)}"


def _expected(exc: Exception) -> str:
    text = str(exc)
    marker = "type=`"
    if marker in text:
        return text.split(marker, 1)[1].split("`", 1)[0]
    return "valid"


def _deliveries(msg: StreamMessage[Any]) -> int:
    raw = msg.raw_message
    try:
        return int(raw.metadata.num_delivered)
    except Exception:  # core NATS message: no metadata
        return 1


def _bad_names(msg: StreamMessage[Any]) -> str | None:
    """Why a message's names are out of form (None when they are, or it does not decode:
    the handler's own decoding reports that)."""
    body = msg.body if isinstance(msg.body, bytes) else bytes(msg.body)
    try:
        decoded = codec.decode_any(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    try:
        check_names(getattr(msg.raw_message, "subject", ""), decoded)
    except InvalidName as exc:
        return str(exc)
    return None


def dead_letter_middleware(service: str) -> type[BaseMiddleware]:
    """Middleware that sends undecodable (or endlessly failing) messages to the service's DLQ."""

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Callable[..., Awaitable[Any]],
                                msg: StreamMessage[Any]) -> Any:
            if (bad := _bad_names(msg)) is not None:
                # Before any handler: a key, path or subject is never built from it.
                await _send_dead_letter(self.context, service, msg, f"rejected: {bad}")
                return None
            try:
                return await call_next(msg)
            except _DECODE_ERRORS as exc:
                await _send_dead_letter(self.context, service, msg, _reason(msg, exc))
                return None
            except HandlerException:
                raise
            except Rejected as exc:
                await _send_dead_letter(self.context, service, msg, f"rejected: {exc}")
                return None
            except Exception as exc:
                n = _deliveries(msg)
                if n >= MAX_DELIVER:
                    await _send_dead_letter(self.context, service, msg,
                                            f"failed {MAX_DELIVER} times: {exc!r}")
                    return None
                log.exception("handler failed, will retry", service=service, deliveries=n)
                # Back off between attempts instead of hammering a failing dependency.
                await msg.nack(delay=min(0.5 * 2 ** (n - 1), 30.0))  # type: ignore[call-arg]
                return None

    return DeadLetterMiddleware


async def _send_dead_letter(context: Any, service: str, msg: StreamMessage[Any],
                            reason: str) -> None:
    broker: NatsBroker = context.get("broker")
    body = msg.body if isinstance(msg.body, bytes) else bytes(msg.body)
    letter = DeadLetter(
        service=service,
        subject=getattr(msg.raw_message, "subject", ""),
        reason=reason,
        payload=body.decode("utf-8", "replace"),
        headers={k: v for k, v in (msg.headers or {}).items() if isinstance(v, str)},
        deliveries=_deliveries(msg),
    )
    await broker.publish(codec.encode(letter), subjects.dlq(service),
                         stream=subjects.STREAM_DLQ)
    log.warning("dead-lettered", service=service, subject=letter.subject, reason=reason)


class DockyardBroker(NatsBroker):
    """A NatsBroker that knows how long its consumers wait for an ack before redelivering."""

    ack_wait: float = ACK_WAIT
    # Its identity's reply inbox prefix: pull subscriptions take theirs from here.
    inbox: str = "_INBOX"


async def _decode(msg: StreamMessage[Any],
                  original: Callable[[StreamMessage[Any]], Awaitable[Any]]) -> Any:
    """JSON of CloudEvents (FastStream decodes only `application/json` by itself)."""
    if msg.content_type == CLOUDEVENTS_JSON:
        return json.loads(msg.body)
    return await original(msg)


def make_broker(servers: str | list[str], service: str, ack_wait: float = ACK_WAIT, *,
                credentials: Credentials) -> NatsBroker:
    """A broker, connected as an identity, whose handlers take msgspec structs and whose bad
    messages go to the DLQ."""
    quiet = logging.getLogger(f"dockyard.faststream.{service}")
    quiet.setLevel(logging.WARNING)
    broker = DockyardBroker(
        servers,
        logger=quiet,
        serializer=MsgSpecSerializer(),
        # Outermost first: tracing sees everything, then the counts, then the dead letters;
        # FastStream's metrics innermost, so they see the exceptions the handlers raise.
        middlewares=[*tracing.middlewares(service), metrics.middleware(service),
                     dead_letter_middleware(service), metrics.faststream_middleware(service)],
        decoder=_decode,
        name=f"dockyard-{service}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        security=NatsNKey.from_seed(credentials.seed),
        inbox_prefix=inbox_prefix(credentials.identity),
    )
    broker.ack_wait = ack_wait
    broker.inbox = inbox_prefix(credentials.identity)
    return broker


def durable_subscriber(
    broker: NatsBroker,
    subject: str,
    durable: str,
    stream: str,
    *,
    ack_wait: float | None = None,
    new_only: bool = False,
) -> PullStreamSubscriber:
    """A durable pull consumer with explicit ack, shared by every instance of a service."""
    # A crashed instance's unacked message goes to another after ack_wait (in-progress acks
    # keep a long hook's message from being redelivered while it runs).
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=ack_wait or getattr(broker, "ack_wait", ACK_WAIT),
        max_deliver=-1,
        filter_subject=subject,
        deliver_policy=DeliverPolicy.NEW if new_only else DeliverPolicy.ALL,
    )
    return broker.subscriber(
        subject,
        stream=JStream(stream, declare=False),
        durable=durable,
        config=config,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        inbox_prefix=f"{getattr(broker, 'inbox', '_INBOX')}.".encode(),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )


async def publish(broker: NatsBroker, message: Message, subject: str | None = None) -> None:
    """Publish an event or command to JetStream, deduplicated by its id."""
    if isinstance(message, Event):
        target = subject or message.nats_subject()
        stream = subjects.STREAM_EVENTS
        headers = {"Nats-Msg-Id": message.id, "content-type": CLOUDEVENTS_JSON}
    else:
        # getattr: only commands have `subject` (a ClassVar); Message's type has none.
        target = subject or getattr(message, "subject")  # noqa: B009
        stream = subjects.STREAM_COMMANDS
        msg_id = (getattr(message, "deployment_id", "") or getattr(message, "run_id", "")) + \
            ":" + type(message).__name__
        headers = {"Nats-Msg-Id": msg_id, "content-type": "application/json"}
    # The body is encoded here: FastStream would otherwise set its own content-type.
    body = codec.encode(message)
    check_size(broker, message, body)
    await broker.publish(body, target, stream=stream, headers=headers)


def check_size(broker: NatsBroker, message: Message, body: bytes) -> None:
    """PayloadTooLarge if the body cannot go on the bus (the server would refuse it)."""
    connection = getattr(broker, "connection", None)
    limit = int(getattr(connection, "max_payload", 0) or MAX_PAYLOAD)
    if len(body) + HEADER_ROOM > limit:
        raise PayloadTooLarge(message.type, len(body), limit)
