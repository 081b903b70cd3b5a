"""The events of the daemon's native streams: one typed shape from the daemon to the UI.

A turn (``POST /api/turns``, a re-route) and document ingestion (``POST /api/documents``) answer
server-sent events, ``event: <type>`` then ``data: <json>`` carrying the same ``type``. Each
event is a ``TypedDict`` here whose ``type`` is a ``Literal``, so a type checker narrows a
:data:`TurnEvent` or an :data:`IngestEvent` on ``event["type"]``. The daemon builds them
(:mod:`assistant.daemon.turns`, :mod:`assistant.daemon.documents_api`),
:func:`assistant.daemon.sse.encode` writes them, and the client reads them back with
:func:`parse_event` for the CLI and the TUI. The JSON is the dict as built: these types name it.

- a turn: ``route`` (or, for a turn a guard blocked, ``guard``); then ``progress``,
  ``notice``, ``summary``, ``guard``, ``delta`` and ``citation``; last ``done``
  (:class:`TurnDone`) or ``error``;
- ingestion: ``progress`` and ``document``; last ``done`` (:class:`IngestDone`) or ``error``.

What a client cannot use it skips rather than fails on: :func:`parse_event` returns None for an
event type it does not know (a newer daemon may add kinds; an older client goes on without
them), for data that is not a JSON object, and for a known event that lacks a required field
or has one of the wrong type. Fields it does not know are kept. Values that name one of a few
choices (a route's ``method``, a status, a level) are plain ``str`` for the same reason: a new
choice must not make an event unreadable. Of a ``dict[...]`` field (``scores``, ``timings``)
only that it is an object is checked: its items are as sent.
"""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import (
    Any,
    Generic,
    Literal,
    TypedDict,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

# Optional fields come from ``total=False`` bases: with postponed annotations, Python 3.11's
# ``TypedDict`` cannot see ``NotRequired`` (it would count those keys as required).

log = logging.getLogger("assistant.wire")


class TurnIds(TypedDict, total=False):
    """Where a stored turn sits; none of them when the client keeps its own history."""

    conversation_id: str
    message_id: str  # the reply
    user_message_id: str
    replaces: str  # a regenerate or a re-route: the reply answered again


class _RouteDetails(TurnIds, total=False):
    method: str  # explicit / correction / semantic / fallback
    score: float
    runner_up: str | None
    runner_up_score: float
    explanation: str
    text: str  # what the skill is given (an explicit command's words without the command)
    scores: dict[str, float]


class Route(_RouteDetails):
    """Where the turn goes and why; the first event of a turn."""

    type: Literal["route"]
    skill: str


class Progress(TypedDict):
    """Work done so far: ``done`` of ``total`` (chunks summarized, chunks embedded…)."""

    type: Literal["progress"]
    done: int
    total: int
    message: str


class Notice(TypedDict):
    """Something the user should see that is not part of the reply."""

    type: Literal["notice"]
    message: str
    level: str  # info / warning


class Summary(TypedDict):
    """The conversation outgrew the context: its older turns were folded into this summary."""

    type: Literal["summary"]
    message_id: str
    text: str
    covers: int  # the messages it stands for
    tokens_before: int
    tokens_after: int
    context: int


class Delta(TypedDict):
    """A piece of the reply's text."""

    type: Literal["delta"]
    text: str


class TokenUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int


class _GuardDetails(TypedDict, total=False):
    kinds: list[str]  # what was found: secret kinds (api_key, card…), a blocked topic


class GuardEvent(_GuardDetails):
    """A guard acted: blocked or rewrote the user's text (``stage`` input), redacted or stopped
    the reply (output), or failed and was left out (``error``). Stored with the reply too."""

    type: Literal["guard"]
    guard: str  # the guard's name
    action: str  # block / rewrite / redact / stop / error
    stage: str  # input / output
    reason: str  # for the user


class _SupportDetails(TypedDict, total=False):
    support: str  # the sentence of the passage that supports the answer
    span: list[int]  # its start and end in the passage's text


class CitationEvent(_SupportDetails):
    """A source the reply cites as ``[number]``, and the sentence of it that supports the
    answer; stored with the reply (its ``citations``)."""

    type: Literal["citation"]
    number: int
    source: str  # document, section, line


class _DoneDetails(TurnIds, total=False):
    model: str  # the model that answered
    skill: str
    usage: TokenUsage
    context: int | None  # the context of that model; None when its backend cannot tell
    timings: dict[str, float]
    # How sure the model was of the reply, 0…1 (assistant.confidence); None when no model
    # token of it came with a log-probability (a skill that answered itself, a remote engine).
    confidence: float | None


class TurnDone(_DoneDetails):
    """The turn ended: complete, cancelled with its partial text stored, or blocked by a
    guard (the reason is the reply; a ``guard`` event came first)."""

    type: Literal["done"]
    status: str  # complete / cancelled / blocked


class _ErrorDetails(TurnIds, total=False):
    code: str  # the error table's (assistant.error_codes), e.g. context_length_exceeded
    status: int  # the HTTP status the error stands for: 4xx the caller's, 503 worth retrying
    retry_after: int  # seconds, with a 503
    param: str  # the request field at fault, when one is


class Error(_ErrorDetails):
    """The stream ended in an error (a turn's carries its ids, ingestion's none)."""

    type: Literal["error"]
    message: str


class Document(TypedDict):
    """What became of one file given to ingestion."""

    type: Literal["document"]
    path: str
    status: str  # added / updated / unchanged / failed
    chunks: int
    message: str
    document_id: str


class IngestDone(TypedDict):
    """Ingestion ended: how many files had each outcome."""

    type: Literal["done"]
    added: int
    updated: int
    unchanged: int
    failed: int


TurnEvent = (Route | Progress | Notice | Summary | Delta | GuardEvent | CitationEvent | TurnDone
             | Error)
IngestEvent = Progress | Document | IngestDone | Error
WireEvent = TurnEvent | IngestEvent

E = TypeVar("E")


@dataclass(frozen=True)
class EventKinds(Generic[E]):
    """The events one kind of stream may carry, by ``type``."""

    name: str
    types: Mapping[str, Any]  # type -> its TypedDict





def parse_event(name: str, data: str, kinds: EventKinds[E]) -> E | None:
    """The event of one SSE frame (its ``event`` name and ``data`` text) of a stream of
    ``kinds``; None for one to skip: an unknown ``type``, or data that does not fit it (see
    the module's docstring). A frame whose name is not its data's ``type`` does not fit."""
    try:
        event = json.loads(data)
    except ValueError:
        event = None
    kind = event.get("type") if isinstance(event, dict) else None
    shape = kinds.types.get(kind) if isinstance(kind, str) else None
    if shape is not None and name == kind and _required_fit(_without_odd_options(event, shape),
                                                            shape):
        return cast(E, event)
    why = ("not a JSON object with a type" if kind is None
           else f"no {kinds.name} event has type {kind!r}" if shape is None
           else f"its data says type {kind!r}" if name != kind
           else f"it does not fit the {kind!r} event")
    log.debug("event skipped", extra={"event": name, "why": why})
    return None


@cache
def _fields(shape: Any) -> dict[str, Any]:
    return get_type_hints(shape)


def _without_odd_options(event: dict[str, Any], shape: Any) -> dict[str, Any]:
    """``event`` without its optional fields of the wrong type (dropped in place): a detail
    that does not fit costs the detail, not the event (a ``done`` lost would leave a reply
    streaming forever)."""
    fields = _fields(shape)
    for key in list(event):
        if (key in fields and key not in shape.__required_keys__
                and not _fits(event[key], fields[key])):
            log.debug("event field dropped", extra={"event": event.get("type"), "field": key})
            del event[key]
    return event


def _required_fit(event: dict[str, Any], shape: Any) -> bool:
    """Whether ``event``, its odd optional fields already dropped, has every required field of
    ``shape`` with its type (the optional ones left were checked by the drop)."""
    fields = _fields(shape)
    return all(key in event and _fits(event[key], fields[key])
               for key in shape.__required_keys__)


def _fits(value: object, hint: Any) -> bool:
    """Whether ``value`` (decoded JSON) has the type ``hint``, to the depth the module says."""
    origin = get_origin(hint)
    if origin is Literal:
        return value in get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):  # JSON true is no number
        return hint is bool
    if hint is float:
        return isinstance(value, int | float)
    if is_typeddict(hint):
        if not isinstance(value, dict) or not hint.__required_keys__ <= value.keys():
            return False
        fields = _fields(hint)
        return all(_fits(v, fields[k]) for k, v in value.items() if k in fields)
    return isinstance(value, origin or hint)


def _by_type(union: Any) -> dict[str, Any]:
    """Each event of ``union`` by its ``type``: the unions above are the one list."""
    return {get_args(_fields(shape)["type"])[0]: shape for shape in get_args(union)}


TURN_EVENTS: EventKinds[TurnEvent] = EventKinds("turn", _by_type(TurnEvent))
INGEST_EVENTS: EventKinds[IngestEvent] = EventKinds("ingestion", _by_type(IngestEvent))
