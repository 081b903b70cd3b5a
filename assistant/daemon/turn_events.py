"""The wire events of a turn made from its parts: the route decision, a guard's decision, a
skill's citation, the error that ended it (:mod:`assistant.wire` types them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from assistant import wire
from assistant.breaker import fault_of
from assistant.error_codes import http_error
from assistant.errors import AssistantError, SkillFailed, SkillUnavailable
from assistant.guards import GuardDecision
from assistant.routing import RouteDecision
from assistant.skills import Citation, ErrorEvent


async def guard_events(decision: GuardDecision) -> AsyncIterator[wire.TurnEvent]:
    """The ``guard`` event of ``decision``; for a guard that failed, a notice too (a client
    that does not know ``guard`` events still says it)."""
    yield decision.event()
    if decision.action == "error":
        yield wire.Notice(type="notice", message=decision.reason, level="warning")


def error_event(error: ErrorEvent | None, ids: wire.TurnIds) -> wire.Error:
    """The ``error`` event: the code and HTTP status of whose fault it was (the caller's 4xx,
    the infrastructure's 503 with ``retry_after``, the skill's 500)."""
    message = error.message if error is not None else "the skill ended without a reply"
    exc = error.error if error is not None else None
    if not isinstance(exc, AssistantError) or (fault_of(exc) == "skill"
                                               and not isinstance(exc, SkillUnavailable)):
        exc = SkillFailed(message)
    status, body, headers = http_error(exc)
    event = cast(wire.Error, {"type": "error", "code": body["error"]["code"],
                              "message": message, "status": status, **ids})
    if body["error"].get("param"):
        event["param"] = body["error"]["param"]
    if "Retry-After" in headers:
        event["retry_after"] = int(headers["Retry-After"])
    return event


def citation_event(citation: Citation) -> wire.CitationEvent:
    event = wire.CitationEvent(type="citation", number=citation.number, source=citation.source)
    if citation.support:
        event["support"] = citation.support
    if citation.span is not None:
        event["span"] = list(citation.span)
    return event


def route_event(decision: RouteDecision, ids: wire.TurnIds) -> wire.Route:
    """The ``route`` event: the decision's fields, in its order, then the turn's ids."""
    return wire.Route(
        type="route", method=decision.method, skill=decision.skill, score=decision.score,
        runner_up=decision.runner_up, runner_up_score=decision.runner_up_score,
        explanation=decision.explanation, text=decision.text, scores=decision.scores, **ids)
