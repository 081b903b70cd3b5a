"""One user turn, end to end: store it, route it, run the skill, stream events, finalize.

Events are dicts with a ``type``: ``route`` first, then ``progress``, ``notice`` and ``delta``
pieces, and last ``done`` (status complete or cancelled) or ``error``. The user's message is
committed before anything runs; the reply is created ``streaming``, its partial text saved as
it grows, and finalized exactly once, also when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.context import BackendContext
from assistant.daemon.compaction import CompactionFailed, Compactor, chat_messages
from assistant.daemon.events import while_running
from assistant.errors import (
    AssistantError,
    DaemonError,
    ModelNotFound,
    RequestError,
    StorageUnavailable,
)
from assistant.locations import data_dir
from assistant.models.backend import (
    Backend,
    ChatMessage,
    Delta,
    GenerationParams,
    ModelInfo,
    closing_stream,
)
from assistant.routing import RouteDecision, Router
from assistant.skills import (
    DeltaEvent,
    DocumentSearch,
    Done,
    ErrorEvent,
    Notice,
    Progress,
    Reply,
    Turn,
)
from assistant.store.records import Message, model_context

if TYPE_CHECKING:
    from assistant.daemon.server import Daemon
    from assistant.plugins import PluginHost
    from assistant.store.repository import Store

log = logging.getLogger("assistant.turns")

SAVE_EVERY_S = 0.5


@dataclass
class TurnRequest:
    text: str
    conversation_id: str | None = None
    skill: str | None = None
    model: str | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    persist: bool = True
    history: list[ChatMessage] | None = None
    regenerate: str | None = None  # an assistant message id: answer its question again
    edit: str | None = None  # a user message id: ask ``text`` in its place, on a new branch


class Metered(Backend):
    """Passes chat through to ``inner`` and adds up the usage of every generation."""

    def __init__(self, inner: Backend, on_done: Callable[[str, Delta], None]) -> None:
        self.inner = inner
        self.on_done = on_done

    def models(self) -> list[ModelInfo]:
        return self.inner.models()

    async def chat(
        self, model: str, messages: list[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        async with closing_stream(self.inner.chat(model, messages, params)) as stream:
            async for delta in stream:
                if delta.finish_reason is not None:
                    self.on_done(model, delta)
                yield delta

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        return await self.inner.embed(model, texts)

    async def count_tokens(self, model: str, messages: list[ChatMessage]) -> int:
        return await self.inner.count_tokens(model, messages)

    async def context_length(self, model: str) -> int | None:
        return await self.inner.context_length(model)


@dataclass
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generations: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    model: str | None = None  # the model of the last generation

    def add(self, model: str, delta: Delta) -> None:
        self.model = model
        self.prompt_tokens += delta.prompt_tokens
        self.completion_tokens += delta.completion_tokens
        self.generations += 1
        self.timings = dict(delta.timings)


class TurnService:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.settings = daemon.settings
        self.plugins: PluginHost | None = None
        self.router: Router | None = None
        self.store: Store | None = None
        self.ready = asyncio.Event()
        self.documents: DocumentSearch | None = None

    # -- start and stop ----------------------------------------------------------------------

    async def start(self, store: Store | None) -> None:
        from assistant.plugins import load_plugins

        self.store = store
        self.plugins = self.plugins or load_plugins(self.settings)
        if store is not None:
            from assistant.documents.search import HybridSearch

            self.documents = HybridSearch(store, self._embed)
        for backend in self.plugins.backends:
            self.daemon.models.add_backend(backend)
        self.router = Router(
            self.plugins.available_skills(), self._embed,
            corrections_path=data_dir(self.settings) / "routing-corrections.json",
            cache_path=self._routing_cache(),
        )
        for notice in await self.plugins.acall("startup", daemon=self.daemon):
            self.daemon.problems.append(notice)
        try:
            await self.router.warm()
        except AssistantError as exc:
            self.daemon.problems.append(f"semantic routing is off: {exc.message}")
        finally:
            self.ready.set()

    def _routing_cache(self) -> Path | None:
        from assistant.models import registry

        try:
            record = registry.resolve(self.settings, self.settings.models.embedding)
            info = record.path.stat()
        except (AssistantError, OSError):
            return None
        key = f"{record.name}-{info.st_size}-{info.st_mtime_ns}".encode()
        digest = hashlib.sha256(key).hexdigest()[:16]
        return data_dir(self.settings) / f"routing-examples-{digest}.json"

    async def wait_ready(self) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), self.settings.daemon.start_timeout)
        except TimeoutError:
            raise DaemonError("the daemon is still starting", "Try again in a moment.") from None

    async def stop(self) -> None:
        if self.plugins is not None:
            await self.plugins.acall("shutdown", daemon=self.daemon)

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        return await self.daemon.models.embed(self.settings.models.embedding, texts)

    # -- routing -----------------------------------------------------------------------------

    async def route(self, text: str, skill: str | None = None) -> RouteDecision:
        await self.wait_ready()
        if self.router is None or self.plugins is None:
            raise DaemonError("the daemon is still starting", "Try again in a moment.")
        if skill is not None:
            if skill not in self.plugins.available_skills():
                known = ", ".join(sorted(self.plugins.available_skills()))
                raise RequestError(f"skill: no skill named {skill!r}; available: {known}",
                                   param="skill", code="unknown_skill")
            return RouteDecision("explicit", skill, 1.0, None, 0.0,
                                 f"the client asked for '{skill}'", text)
        try:
            return await self.router.route(text)
        except AssistantError as exc:
            # No embedding model: explicit commands still work, the rest goes to chat.
            hit = self.router.explicit(text)
            if hit:
                return RouteDecision("explicit", hit[0], 1.0, None, 0.0,
                                     f"explicit command: you asked for '{hit[0]}'", hit[1])
            return RouteDecision("fallback", self.router.fallback, 0.0, None, 0.0,
                                 f"semantic routing unavailable ({exc.message})", text)

    # -- a turn ------------------------------------------------------------------------------

    async def run(self, request: TurnRequest) -> AsyncIterator[dict[str, Any]]:
        await self.wait_ready()
        if self.plugins is None or self.router is None:
            raise DaemonError("the daemon is still starting", "Try again in a moment.")
        if request.persist and self.store is None:
            raise StorageUnavailable(
                "the conversation store is unavailable; see `assistant daemon status`")
        if request.skill is not None:
            await self.route("", request.skill)  # an unknown skill is a 400 before any write
        started = time.perf_counter()
        model = request.model or self.settings.models.default
        store = self.store if request.persist else None
        stored = None
        history: list[ChatMessage] = list(request.history or [])
        utterance = request.text
        if store is not None:
            if request.regenerate:  # a new reply beside this one, to the same user message
                stored = await asyncio.to_thread(store.regenerate, request.regenerate,
                                                 model=request.model)
                utterance = stored.user_message.content
            elif request.edit:  # a new user message beside this one: a new branch
                stored = await asyncio.to_thread(store.edit_message, request.edit, utterance,
                                                 model=model)
            else:
                stored = await asyncio.to_thread(
                    store.begin_turn, request.conversation_id, utterance, model=model)
            if request.history is None:
                path = await asyncio.to_thread(store.history, stored.user_message.id)
                history = chat_messages(model_context(path)[:-1])
        ids = {} if stored is None else {
            "conversation_id": stored.conversation_id,
            "message_id": stored.assistant_message.id,
            "user_message_id": stored.user_message.id,
        }
        usage = _Usage()
        text: list[str] = []
        status, error, error_code = "cancelled", "", "skill_failed"
        decision: RouteDecision | None = None
        route: dict[str, Any] | None = None
        last_save = time.monotonic()
        try:  # from here on the stored reply is finalized exactly once, whatever happens
            decision = await self.route(utterance, request.skill)
            route = decision.to_dict()
            yield {"type": "route", **route, **ids}
            if store is not None and stored is not None and request.history is None:
                async for fitting in self._fit_context(store, stored.user_message.id,
                                                       decision.skill, model, request.params):
                    if fitting["type"] == "summary":
                        path = await asyncio.to_thread(store.history, stored.user_message.id)
                        history = chat_messages(model_context(path)[:-1])
                    yield fitting
            turn = Turn(text=decision.text, raw_text=utterance,
                        conversation_id=ids.get("conversation_id"), skill=decision.skill,
                        route=route, args={"params": request.params})
            for notice in await self.plugins.acall("before_turn", turn=turn):
                yield {"type": "notice", "message": notice, "level": "warning"}
            skill_model, instead = self.skill_model(decision.skill, model)
            if instead:
                yield {"type": "notice", "message": instead, "level": "warning"}
            ctx = BackendContext(
                Metered(self.daemon.models, usage.add), model,
                embedding_model=self.settings.models.embedding, history=history,
                documents=self.documents,
                config={**self.settings.skill_section(decision.skill), "model": skill_model},
                params=request.params, cache_tag=ids.get("conversation_id"),
            )
            events = closing_stream(self.plugins.run_skill(decision.skill, turn, ctx))
            async with events as skill_events:
                async for event in skill_events:
                    if isinstance(event, DeltaEvent):
                        text.append(event.text)
                        yield {"type": "delta", "text": event.text}
                        if (store is not None and stored is not None
                                and time.monotonic() - last_save > SAVE_EVERY_S):
                            last_save = time.monotonic()
                            try:
                                await asyncio.to_thread(store.save_partial,
                                                        stored.assistant_message.id, "".join(text))
                            except AssistantError as exc:  # the reply goes on; finalize retries
                                log.warning("saving partial text failed", extra={"error": str(exc)})
                    elif isinstance(event, Progress):
                        yield {"type": "progress", "done": event.done, "total": event.total,
                               "message": event.message}
                    elif isinstance(event, Notice):
                        yield {"type": "notice", "message": event.message, "level": event.level}
                    elif isinstance(event, ErrorEvent):
                        error, error_code = event.message, event.code
                    elif isinstance(event, Done):
                        status = event.status
        except Exception as exc:
            status, error = "error", str(exc)
            raise
        finally:
            reply_text = "".join(text)
            timings = {**usage.timings, "turn_s": round(time.perf_counter() - started, 4)}
            if store is not None and stored is not None:
                with contextlib.suppress(AssistantError):
                    await asyncio.shield(asyncio.to_thread(
                        store.finalize, stored.assistant_message.id, status=status,
                        content=reply_text, skill=decision.skill if decision else None,
                        route=route, model=usage.model or model,
                        prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens, timings=timings,
                    ))
        assert decision is not None
        reply = Reply(reply_text, status, decision.skill)  # type: ignore[arg-type]
        for notice in await self.plugins.acall("after_turn", turn=turn, reply=reply):
            yield {"type": "notice", "message": notice, "level": "warning"}
        if status == "error":
            yield {"type": "error", "code": error_code, "message": error, **ids}
            return
        ran_with = usage.model or self._chat_model(decision.skill, model)
        yield {"type": "done", "status": status, "model": ran_with, "skill": decision.skill,
               "usage": {"prompt_tokens": usage.prompt_tokens,
                         "completion_tokens": usage.completion_tokens},
               "context": await self.daemon.models.context_length(ran_with),
               "timings": timings, **ids}

    def _chat_model(self, skill: str, model: str) -> str:
        """The model a skill generates with unless it names one: its configured one, or ours."""
        return self.skill_model(skill, model)[0]

    def skill_model(self, skill: str, model: str) -> tuple[str, str | None]:
        """The model ``skill`` answers with: its ``[skills.X] model`` when that is installed,
        else the turn's ``model``, with a notice saying why and how to get the configured one.

        The shipped defaults name models chosen for each skill's quality; a user who pulled
        only the default chat model still gets answers.
        """
        configured = str(self.settings.skill_section(skill).get("model") or "")
        if not configured or configured == model or configured in self.daemon.models.backends:
            return configured or model, None
        from assistant.models import registry

        try:
            registry.resolve(self.settings, configured)
        except ModelNotFound as exc:
            return model, (f"{skill} answers best with {configured}, which is not available "
                           f"({exc.message.rstrip('.')}); {model} answers instead. "
                           f"{exc.hint or ''}").strip()
        return configured, None

    async def _fit_context(
        self, store: Store, user_message_id: str, skill: str, model: str,
        params: GenerationParams,
    ) -> AsyncIterator[dict[str, Any]]:
        """Compact the conversation if it no longer fits; yields progress and ``summary``."""
        assert self.plugins is not None
        found = self.plugins.skills.get(skill)
        if found is not None and not getattr(found, "uses_history", True):
            return
        chat_model = self._chat_model(skill, model)
        n_ctx = await self.daemon.models.context_length(chat_model)
        if not n_ctx:
            return
        path = await asyncio.to_thread(store.history, user_message_id)

        async def add_summary(before: str, text: str, tokens: int, seconds: float) -> Message:
            return await asyncio.to_thread(
                store.add_summary, before, text, model=chat_model, completion_tokens=tokens,
                timings={"summary_s": round(seconds, 3)})

        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def progress(done: int, total: int, message: str) -> None:
            await events.put({"type": "progress", "done": done, "total": total,
                              "message": message})

        conversation = path[-1].conversation_id
        compactor = Compactor(self.daemon.models, chat_model, n_ctx, add_summary=add_summary,
                              cache_tag=conversation)
        job = asyncio.create_task(compactor.fit(path, max_tokens=params.max_tokens,
                                                progress=progress))
        try:
            async for event in while_running(job, events):
                yield event
            result = job.result()
        except CompactionFailed as exc:  # nothing was stored; the turn goes on uncompacted
            log.warning("compaction failed", extra={"error": exc.message})
            yield {"type": "notice", "level": "warning",
                   "message": f"The conversation outgrew the context but could not be "
                              f"summarized ({exc.message}); older turns may not fit."}
            return
        except AssistantError as exc:  # no such model, a host gone…: the skill will say so
            log.info("context not counted", extra={"error": exc.message})
            return
        if result is not None:
            log.info("conversation compacted", extra={
                "covers": result.covers, "tokens_before": result.tokens_before,
                "tokens_after": result.tokens_after})
            yield {"type": "summary", "message_id": result.summary.id,
                   "text": result.summary.content, "covers": result.covers,
                   "tokens_before": result.tokens_before, "tokens_after": result.tokens_after,
                   "context": n_ctx}

    async def openai_turn(
        self, messages: list[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        """The model ``assistant`` of the OpenAI API: route the last user message, store it."""
        at = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
        if at is None:
            raise RequestError("messages: the model 'assistant' needs a user message",
                               param="messages")
        request = TurnRequest(text=messages[at].content, params=params, history=messages[:at])
        final = Delta("", finish_reason="stop")
        async for event in self.run(request):
            if event["type"] == "delta":
                yield Delta(event["text"])
            elif event["type"] == "error":
                if event["code"] == "context_length_exceeded":
                    raise RequestError(event["message"], code=event["code"], param="messages")
                raise AssistantError(event["message"])
            elif event["type"] == "done":
                final = Delta("", finish_reason="stop" if event["status"] == "complete"
                              else "cancelled", prompt_tokens=event["usage"]["prompt_tokens"],
                              completion_tokens=event["usage"]["completion_tokens"])
        yield final
