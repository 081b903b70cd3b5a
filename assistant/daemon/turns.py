"""One user turn, end to end: store it, route it, run the skill, stream events, finalize.

Events are dicts with a ``type``: ``route`` first, then ``progress``, ``notice``, ``summary``
and ``delta`` pieces, and last ``done`` (status complete or cancelled) or ``error``. The user's
message is committed before anything runs; the reply is created ``streaming``, its partial text
saved as it grows, and finalized exactly once, also when the client goes away
(:class:`ReplyRecorder`). A regenerate, an edit and a re-route (a regenerate with the skill the
user chose, ``method="correction"``) are the same turn with another first step.
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
from typing import TYPE_CHECKING, Any, Literal

from assistant.context import BackendContext
from assistant.daemon.compaction import CompactionFailed, Compactor, chat_messages
from assistant.daemon.events import while_running
from assistant.errors import AssistantError, DaemonError, RequestError, StorageUnavailable
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
    from assistant.store.records import Turn as StoredTurn
    from assistant.store.repository import Store

log = logging.getLogger("assistant.turns")

SAVE_EVERY_S = 0.5


@dataclass
class TurnRequest:
    text: str
    conversation_id: str | None = None
    skill: str | None = None
    # How a skill named by the client was chosen: asked for, or a correction of the router
    # (a re-route: a regenerate with the skill the user says the turn should have gone to).
    method: Literal["explicit", "correction"] = "explicit"
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
class Usage:
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


class ReplyRecorder:
    """The reply as it streams: its text, saved every :data:`SAVE_EVERY_S`, finalized once.

    Without a store (a turn the client keeps itself) it only gathers the text.
    """

    def __init__(self, store: Store | None, message_id: str | None) -> None:
        self.store = store if message_id is not None else None
        self.message_id = message_id
        self.parts: list[str] = []
        self._saved_at = time.monotonic()

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def add(self, piece: str) -> None:
        self.parts.append(piece)
        if self.store is None or time.monotonic() - self._saved_at <= SAVE_EVERY_S:
            return
        self._saved_at = time.monotonic()
        try:
            await asyncio.to_thread(self.store.save_partial, str(self.message_id), self.text)
        except AssistantError as exc:  # the reply goes on; finalize writes it all
            log.warning("saving partial text failed", extra={"error": str(exc)})

    async def finalize(self, **fields: Any) -> None:
        """Commit the final state (``status``, ``skill``, ``route``, ``model``, usage, timings);
        shielded, so that a client going away cannot leave the reply ``streaming``."""
        if self.store is None:
            return
        with contextlib.suppress(AssistantError):
            await asyncio.shield(asyncio.to_thread(
                self.store.finalize, str(self.message_id), content=self.text, **fields))


@dataclass
class _Begun:
    """A turn's first step done: what the user said and, when stored, where it sits."""

    utterance: str
    stored: StoredTurn | None = None
    path: list[Message] = field(default_factory=list)  # root → the user message
    replaces: str | None = None

    def ids(self) -> dict[str, str]:
        if self.stored is None:
            return {}
        ids = {"conversation_id": self.stored.conversation_id,
               "message_id": self.stored.assistant_message.id,
               "user_message_id": self.stored.user_message.id}
        if self.replaces is not None:
            ids["replaces"] = self.replaces
        return ids


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

    async def _started(self) -> tuple[PluginHost, Router]:
        await self.wait_ready()
        if self.plugins is None or self.router is None:
            raise DaemonError("the daemon is still starting", "Try again in a moment.")
        return self.plugins, self.router

    # -- routing -----------------------------------------------------------------------------

    async def check_skill(self, skill: str) -> None:
        """Wait for start-up, then a 400 ``unknown_skill`` unless ``skill`` can run."""
        plugins, _ = await self._started()
        available = plugins.available_skills()
        if skill not in available:
            known = ", ".join(sorted(available))
            raise RequestError(f"skill: no skill named {skill!r}; available: {known}",
                               param="skill", code="unknown_skill")

    async def correct(self, text: str, skill: str) -> None:
        """Remember that ``text`` belongs to ``skill``: similar turns follow it from now on."""
        _, router = await self._started()
        await asyncio.to_thread(router.correct, text, skill)

    async def route(self, text: str, request: TurnRequest) -> RouteDecision:
        """Where ``text`` goes: the client's skill, else the router, else chat."""
        _, router = await self._started()
        skill = request.skill
        if skill is not None:
            if request.method == "correction":
                return RouteDecision("correction", skill, 1.0, None, 0.0,
                                     f"you re-routed this turn to '{skill}'", text)
            return RouteDecision("explicit", skill, 1.0, None, 0.0,
                                 f"the client asked for '{skill}'", text)
        try:
            return await router.route(text)
        except AssistantError as exc:
            # No embedding model: explicit commands still work, the rest goes to chat.
            hit = router.explicit(text)
            if hit:
                return RouteDecision("explicit", hit[0], 1.0, None, 0.0,
                                     f"explicit command: you asked for '{hit[0]}'", hit[1])
            return RouteDecision("fallback", router.fallback, 0.0, None, 0.0,
                                 f"semantic routing unavailable ({exc.message})", text)

    # -- a turn ------------------------------------------------------------------------------

    async def run(self, request: TurnRequest) -> AsyncIterator[dict[str, Any]]:
        """The events of one turn; the steps are the methods below, in order."""
        plugins, _ = await self._started()
        store = self._store_for(request)
        if request.skill is not None:
            await self.check_skill(request.skill)  # a 400 before any write
        started = time.perf_counter()
        model = request.model or self.settings.models.default
        begun = await self._begin(store, request, model)
        ids = begun.ids()
        history = list(request.history) if request.history is not None else []
        usage = Usage()
        recorder = ReplyRecorder(store, ids.get("message_id"))
        status, error, error_code = "cancelled", "", "skill_failed"
        decision: RouteDecision | None = None
        route: dict[str, Any] | None = None
        try:  # from here on the stored reply is finalized exactly once, whatever happens
            decision = await self.route(begun.utterance, request)
            route = decision.to_dict()
            yield {"type": "route", **route, **ids}
            if store is not None and begun.stored is not None and request.history is None:
                async for fitting in self._fit_context(store, begun, decision.skill, model,
                                                       request.params):
                    yield fitting
                history = chat_messages(model_context(begun.path)[:-1])
            turn = Turn(text=decision.text, raw_text=begun.utterance,
                        conversation_id=ids.get("conversation_id"), skill=decision.skill,
                        route=route, args={"params": request.params})
            for notice in await plugins.acall("before_turn", turn=turn):
                yield {"type": "notice", "message": notice, "level": "warning"}
            ctx = self._skill_context(decision.skill, model, history, request.params,
                                      ids.get("conversation_id"), usage)
            async with closing_stream(plugins.run_skill(decision.skill, turn, ctx)) as events:
                async for event in events:
                    if isinstance(event, DeltaEvent):
                        await recorder.add(event.text)
                        yield {"type": "delta", "text": event.text}
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
            timings = {**usage.timings, "turn_s": round(time.perf_counter() - started, 4)}
            await recorder.finalize(
                status=status, skill=decision.skill if decision else None, route=route,
                model=model, prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens, timings=timings)
        assert decision is not None
        reply = Reply(recorder.text, status, decision.skill)  # type: ignore[arg-type]
        for notice in await plugins.acall("after_turn", turn=turn, reply=reply):
            yield {"type": "notice", "message": notice, "level": "warning"}
        if status == "error":
            yield {"type": "error", "code": error_code, "message": error, **ids}
            return
        ran_with = usage.model or self._chat_model(decision.skill, model)
        yield {"type": "done", "status": status, "model": model, "skill": decision.skill,
               "usage": {"prompt_tokens": usage.prompt_tokens,
                         "completion_tokens": usage.completion_tokens},
               "context": await self.daemon.models.context_length(ran_with),
               "timings": timings, **ids}

    def _store_for(self, request: TurnRequest) -> Store | None:
        """The store a turn is written to; None when the client keeps its history itself."""
        if not request.persist:
            return None
        if self.store is None:
            raise StorageUnavailable(
                "the conversation store is unavailable; see `assistant daemon status`")
        return self.store

    async def _begin(self, store: Store | None, request: TurnRequest, model: str) -> _Begun:
        """Commit the user's side: a new message, an edit (a new branch) or a regenerate (a
        new reply to the same message); read the path to it once."""
        if store is None:
            return _Begun(request.text)
        if request.regenerate:
            stored = await asyncio.to_thread(store.regenerate, request.regenerate,
                                             model=request.model)
        elif request.edit:
            stored = await asyncio.to_thread(store.edit_message, request.edit, request.text,
                                             model=model)
        else:
            stored = await asyncio.to_thread(store.begin_turn, request.conversation_id,
                                             request.text, model=model)
        path = []
        if request.history is None:
            path = await asyncio.to_thread(store.history, stored.user_message.id)
        return _Begun(stored.user_message.content, stored, path, replaces=request.regenerate)

    def _skill_context(
        self, skill: str, model: str, history: list[ChatMessage], params: GenerationParams,
        conversation_id: str | None, usage: Usage,
    ) -> BackendContext:
        return BackendContext(
            Metered(self.daemon.models, usage.add), model,
            embedding_model=self.settings.models.embedding, history=history,
            documents=self.documents, config=self.settings.skill_section(skill), params=params,
            cache_tag=conversation_id,
        )

    def _chat_model(self, skill: str, model: str) -> str:
        """The model a skill generates with unless it names one: its configured one, or ours."""
        return str(self.settings.skill_section(skill).get("model") or model)

    async def _fit_context(
        self, store: Store, begun: _Begun, skill: str, model: str, params: GenerationParams,
    ) -> AsyncIterator[dict[str, Any]]:
        """Compact the conversation if it no longer fits: yields progress and ``summary``, and
        puts the summary into ``begun.path`` where the store put it."""
        assert self.plugins is not None
        found = self.plugins.skills.get(skill)
        if found is not None and not getattr(found, "uses_history", True):
            return
        chat_model = self._chat_model(skill, model)
        n_ctx = await self.daemon.models.context_length(chat_model)
        if not n_ctx:
            return
        path = begun.path

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
            # The store put the summary just above the first kept message.
            begun.path = [*path[:result.covers], result.summary, *path[result.covers:]]
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
