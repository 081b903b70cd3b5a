"""The model ``assistant`` of the OpenAI API: a chat completion that is a routed turn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from assistant import wire
from assistant.daemon.turns import TurnRequest, TurnService
from assistant.error_codes import from_event
from assistant.errors import RequestError
from assistant.models.backend import ChatMessage, Delta, GenerationParams


async def openai_turn(
    turns: TurnService, messages: list[ChatMessage], params: GenerationParams, *,
    carried: frozenset[str] | None = None, notices: list[str] | None = None,
    local: bool = False, owner: int = 0,
) -> AsyncIterator[Delta]:
    """The model ``assistant`` of the OpenAI API: route the last user message, store it.

    ``carried`` names the request's fields; the turn's notices (a fallback, a guard's
    rewrite) are appended to ``notices`` as they come: OpenAI's chunks have no place
    for them, so the API sends those said before the first piece as a header."""
    at = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if at is None:
        raise RequestError("messages: the model 'assistant' needs a user message",
                           param="messages")
    request = TurnRequest(text=messages[at].content, params=params, history=messages[:at],
                          text_field="messages", carried=carried, local=local, owner=owner)
    if params.constrained:  # before anything is stored: a skill that cannot is a 400
        # The guards see the text before the router does; the turn uses their verdict.
        request.guarded = await turns.guards.check(request.text)
        request.text = request.guarded.text
    if params.constrained and request.guarded and request.guarded.blocked is None:
        request.routed = await turns.routing.route(request.text, request)
        skill = request.routed.skill
        if not getattr(turns.plugins.skills.get(skill), "structured_output", False):
            field = "response_format" if params.json_schema is not None else "grammar"
            raise RequestError(
                f"{field}: the turn routes to skill {skill!r}, which cannot answer in a "
                "given form; name a chat model, or route to chat (\"/chat …\")",
                code="unsupported_parameter", param=field)
    final = Delta("", finish_reason="stop")
    filtered = False  # a guard blocked the turn or stopped the reply: OpenAI's content_filter
    async for event in turns.run(request):
        if event["type"] == "guard" and event["action"] in ("block", "stop"):
            filtered = True
        elif event["type"] == "delta":
            yield Delta(event["text"])
        elif event["type"] == "notice" and notices is not None:
            notices.append(event["message"])
        elif event["type"] == "error":
            raise from_event(event)  # the caller's 400, the infrastructure's 503…
        elif event["type"] == "done":
            usage = event.get("usage") or wire.TokenUsage(prompt_tokens=0,
                                                           completion_tokens=0)
            finish: Literal["stop", "cancelled", "content_filter"] = (
                "content_filter" if filtered else "stop" if event["status"] == "complete"
                else "cancelled")
            final = Delta("", finish_reason=finish, prompt_tokens=usage["prompt_tokens"],
                          completion_tokens=usage["completion_tokens"])
    yield final
