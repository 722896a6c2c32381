"""The FastStream broker every service uses: msgspec structs in, dead letters instead of silent acks."""

from __future__ import annotations

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
from faststream.nats.subscriber.usecases.basic import LogicSubscriber
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard.schemas import codec, subjects
from dockyard.schemas.events import Event, Message

log = structlog.get_logger()

# After this many deliveries a message that keeps failing goes to the dead letters.
MAX_DELIVER = 20
ACK_WAIT = 30.0


class Rejected(Exception):
    """A handler refuses a well-formed message for good: it goes to the dead letters with this reason."""


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


def dead_letter_middleware(service: str) -> type[BaseMiddleware]:
    """Middleware that sends undecodable (or endlessly failing) messages to the service's DLQ."""

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Callable[..., Awaitable[Any]],
                                msg: StreamMessage[Any]) -> Any:
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


async def _send_dead_letter(context: Any, service: str, msg: StreamMessage[Any], reason: str) -> None:
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


def make_broker(url: str, service: str, ack_wait: float = ACK_WAIT) -> NatsBroker:
    """A broker whose handlers take msgspec structs and whose bad messages go to the DLQ."""
    quiet = logging.getLogger(f"dockyard.faststream.{service}")
    quiet.setLevel(logging.WARNING)
    broker = DockyardBroker(
        url,
        logger=quiet,
        serializer=MsgSpecSerializer(),
        middlewares=[dead_letter_middleware(service)],
        name=f"dockyard-{service}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
    )
    broker.ack_wait = ack_wait
    return broker


def durable_subscriber(
    broker: NatsBroker,
    subject: str,
    durable: str,
    stream: str,
    *,
    ack_wait: float | None = None,
    new_only: bool = False,
) -> Callable[[Callable[..., Awaitable[Any]]], LogicSubscriber[Any]]:
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
    return broker.subscriber(  # type: ignore[no-any-return]
        subject,
        stream=JStream(stream, declare=False),
        durable=durable,
        config=config,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )


async def publish(broker: NatsBroker, message: Message, subject: str | None = None) -> None:
    """Publish an event or command to JetStream, deduplicated by its id."""
    if isinstance(message, Event):
        target = subject or message.nats_subject()
        stream = subjects.STREAM_EVENTS
        msg_id = message.id
    else:
        target = subject or getattr(message, "subject")
        stream = subjects.STREAM_COMMANDS
        msg_id = getattr(message, "deployment_id", "") + ":" + type(message).__name__
    await broker.publish(codec.encode(message), target, stream=stream,
                         headers={"Nats-Msg-Id": msg_id})
