"""One user turn, end to end: store it, route it, run the skill, stream events, finalize.

Events are :data:`assistant.wire.TurnEvent` dicts: ``route`` first, then ``progress``,
``notice``, ``summary``, ``delta`` pieces and ``citation``, and last ``done`` (status complete
or cancelled, with the reply's ``confidence``) or ``error``. The user's message is committed
before anything runs; the reply is created ``streaming``, its partial text saved as it grows,
and finalized exactly once, also when the client goes away
(:class:`~assistant.daemon.reply.ReplyRecorder`); ``after_turn`` runs exactly once for each
``before_turn``, also then. A turn routed to a skill whose circuit breaker is open
goes to the fallback skill with a notice saying why (:mod:`~assistant.daemon.route_policy`).
A regenerate, an edit and a re-route (a regenerate with the skill the user chose,
``method="correction"``) are the same turn with another first step.

The plugins' guards (:mod:`~assistant.daemon.guarding`) see the user's text before it is
stored or routed: a rewrite is what is stored; a block stores the user's (rewritten) text and
the guard's reason as the reply (route ``method`` ``blocked``), answers with ``guard`` events,
the reason as a ``delta``, and ``done`` with status ``blocked``; neither the router, the skill
nor ``before_turn`` runs. Each piece of the reply passes the guards' filters before it reaches
the client or the store; a guard that stops it leaves the reply ``cancelled``. The decisions
are ``guard`` events, stored in the reply's route (``guard``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio

from assistant import wire
from assistant.breaker import Ticket
from assistant.confidence import confidence
from assistant.context import BackendContext
from assistant.daemon.compaction import CompactionFailed, Compactor, chat_messages
from assistant.daemon.events import while_running
from assistant.daemon.guarding import Checked, GuardChain, OutputFilter
from assistant.daemon.reply import Metered, ReplyRecorder, Usage
from assistant.daemon.route_policy import RoutePolicy
from assistant.daemon.turn_events import citation_event, error_event, guard_events, route_event
from assistant.errors import (
    AssistantError,
    ModelError,
    StorageUnavailable,
)
from assistant.guards import GuardDecision
from assistant.models.backend import ChatMessage, GenerationParams, closing_stream
from assistant.routing import RouteDecision, Router
from assistant.skills import (
    Citation,
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
    from assistant.config import Settings
    from assistant.daemon.model_manager import ModelManager
    from assistant.plugins import PluginHost
    from assistant.store.records import Turn as StoredTurn
    from assistant.store.repository import Store

log = logging.getLogger("assistant.turns")


@dataclass
class TurnRequest:
    text: str
    conversation_id: str | None = None
    skill: str | None = None
    # How a skill named by the client was chosen: asked for, or a correction of the router
    # (a re-route: a regenerate with the skill the user says the turn should have gone to).
    method: Literal["explicit", "correction"] = "explicit"
    model: str | None = None  # answers the turn, whatever the skill (the caller's choice)
    # Answers when ``model`` names none and the skill has no model of its own: a UI's chat model.
    chat_model: str | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    persist: bool = True
    history: list[ChatMessage] | None = None
    regenerate: str | None = None  # an assistant message id: answer its question again
    edit: str | None = None  # a user message id: ask ``text`` in its place, on a new branch
    routed: RouteDecision | None = None  # where the turn goes, when decided before it runs
    guarded: Checked | None = None  # the guards' check, when done before it runs
    text_field: str = "text"  # what the client calls ``text``, in errors (``messages`` on /v1)
    # The fields the request carried: a model's refusal naming another field is the skill's
    # doing (see reply.Metered); None: every refusal is the caller's.
    carried: frozenset[str] | None = None
    # Over the Unix socket: this machine's user, whose files a skill may read (ctx.local_files).
    local: bool = False
    # Whose turn: 0 the daemon's owner, else a user's id. The turn sees and writes that
    # owner's conversations, searches their documents and follows their routing corrections.
    owner: int = 0


@dataclass
class _Begun:
    """A turn's first step done: what the user said and, when stored, where it sits."""

    utterance: str
    stored: StoredTurn | None = None
    path: list[Message] = field(default_factory=list)  # root → the user message
    replaces: str | None = None

    def ids(self) -> wire.TurnIds:
        if self.stored is None:
            return {}
        ids = wire.TurnIds(conversation_id=self.stored.conversation_id,
                           message_id=self.stored.assistant_message.id,
                           user_message_id=self.stored.user_message.id)
        if self.replaces is not None:
            ids["replaces"] = self.replaces
        return ids


@dataclass
class _Running:
    """What one turn has found out so far, step by step."""

    request: TurnRequest
    begun: _Begun
    model: str
    recorder: ReplyRecorder
    started: float = field(default_factory=time.perf_counter)
    usage: Usage = field(default_factory=Usage)
    decision: RouteDecision | None = None
    skill_model: str = ""  # the model the skill answers with (TurnService.skill_model)
    turn: Turn | None = None
    status: str = "cancelled"
    error: ErrorEvent | None = None
    after_turn: list[str] | None = None  # after_turn's notices, once it has run
    notices: list[str] = field(default_factory=list)  # said right after the route event
    guard: list[GuardDecision] = field(default_factory=list)  # the guards' decisions
    blocked: GuardDecision | None = None  # the guard that refused the turn
    output: OutputFilter | None = None  # the guards' filter of the reply
    timings: dict[str, float] = field(default_factory=dict)
    ctx: BackendContext | None = None  # the skill's: its last generation's logprobs
    citations: list[dict[str, Any]] = field(default_factory=list)  # the skill's sources

    @property
    def confidence(self) -> float | None:
        """The reply's (:mod:`assistant.confidence`); None when no model token of it came
        with a log-probability."""
        return confidence(self.ctx.reply_logprobs) if self.ctx is not None else None

    @property
    def ids(self) -> wire.TurnIds:
        return self.begun.ids()

    @property
    def answered_by(self) -> str:
        """The model of the reply's last generation, else the one its skill would use."""
        return self.usage.model or self.skill_model or self.model


class TurnService:
    """Runs turns with the parts the composition root built: no way back to the daemon."""

    def __init__(self, settings: Settings, models: ModelManager, plugins: PluginHost,
                 router: Router, store: Store | None,
                 documents: DocumentSearch | None = None,
                 documents_of: Callable[[int], DocumentSearch | None] | None = None) -> None:
        """``documents`` is the daemon's owner's document search; ``documents_of(owner)`` a
        user's (without it, a user's turns search no documents)."""
        self.settings = settings
        self.models = models
        self.plugins = plugins
        self.routing = RoutePolicy(plugins, router)
        self.guards = GuardChain(plugins)
        self.store = store
        self.documents = documents
        self.documents_of = documents_of
        self._warned: set[tuple[str, str]] = set()  # (skill, missing model): said once

    # -- a turn ------------------------------------------------------------------------------

    async def run(self, request: TurnRequest) -> AsyncIterator[wire.TurnEvent]:
        """The events of one turn: check, begin (commit the user's side), route, fit the
        context, run the skill, finalize the reply, report."""
        store = self._store_for(request)
        self.routing.check_request(request)  # a 400 before any write
        checked = request.guarded
        if checked is None and not request.regenerate:  # before it is stored or routed
            checked = await self.guards.check(request.text, request.conversation_id,
                                              request.skill)
        if checked is not None:
            request.text = checked.text
        model = request.model or request.chat_model or self.settings.models.default
        begun = await self._begin(store, request, model)
        state = _Running(request, begun, model,
                         ReplyRecorder(store, begun.ids().get("message_id")))
        if checked is not None:
            state.guard, state.blocked = list(checked.decisions), checked.blocked
        try:  # from here on the stored reply is finalized exactly once, whatever happens
            async with closing_stream(self._answer(state, store)) as events:
                async for event in events:
                    yield event
        except Exception:
            state.status = "error"
            raise
        finally:
            # Also when the client went away: Starlette cancels the response's task group,
            # and anyio cancels again at every await of a cancelled scope, so an unshielded
            # await here would end this block before after_turn (before_turn ran, so must it).
            with anyio.CancelScope(shield=True):
                await self._finalize(state)
                await self._after_turn(state)
        async for event in self._report(state):
            yield event

    def _store_for(self, request: TurnRequest) -> Store | None:
        """The store a turn is written to; None when the client keeps its history itself."""
        if not request.persist:
            return None
        if self.store is None:
            raise StorageUnavailable(
                "the conversation store is unavailable; see `assistant daemon status`")
        return self.store.owned_by(request.owner)

    def _documents_for(self, request: TurnRequest) -> DocumentSearch | None:
        """The document search of the turn's owner: never another's documents."""
        if request.owner == 0:
            return self.documents
        return None if self.documents_of is None else self.documents_of(request.owner)

    async def _begin(self, store: Store | None, request: TurnRequest, model: str) -> _Begun:
        """Commit the user's side: a new message, an edit (a new branch) or a regenerate (a
        new reply to the same message); read the path to it, once."""
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

    async def _answer(self, state: _Running, store: Store | None,
                      ) -> AsyncIterator[wire.TurnEvent]:
        """Say what the guards did; route, fit the context, tell the plugins, run the skill,
        or, when a guard blocked the turn, answer with its reason."""
        request, begun = state.request, state.begun
        for decided in state.guard:
            async for event in guard_events(decided):
                yield event
        if state.blocked is not None:
            refusal = f"Blocked by guard '{state.blocked.guard}': {state.blocked.reason}"
            await state.recorder.add(refusal)
            state.status = "complete"
            yield wire.Delta(type="delta", text=refusal)
            return
        decision, set_aside, ticket = self.routing.around_disabled(
            await self.routing.route(begun.utterance, request))
        if set_aside:
            state.notices.append(set_aside)
        try:
            async with closing_stream(self._run_skill(state, store, decision, ticket)) as events:
                async for event in events:
                    yield event
        finally:  # a turn that ends before its skill ran leaves a trial's place to another
            self.plugins.breaker(decision.skill).release(ticket)

    async def _run_skill(self, state: _Running, store: Store | None, decision: RouteDecision,
                         ticket: Ticket | None) -> AsyncIterator[wire.TurnEvent]:
        request, begun, ids = state.request, state.begun, state.ids
        state.decision = decision
        route = decision.to_dict()
        yield route_event(decision, ids)
        for notice in state.notices:
            yield wire.Notice(type="notice", message=notice, level="warning")
        state.skill_model, instead = await self.skill_model(
            decision.skill, request.model, state.model)
        if instead:
            yield wire.Notice(type="notice", message=instead, level="warning")
        history = list(request.history or [])
        if store is not None and begun.stored is not None and request.history is None:
            fit = self._fit_context(store, begun, decision.skill, state.skill_model,
                                    request.params)
            async with closing_stream(fit) as fitting:
                async for summarizing in fitting:
                    yield summarizing
            history = chat_messages(model_context(begun.path)[:-1])
        turn = state.turn = Turn(
            text=decision.text, raw_text=begun.utterance,
            conversation_id=ids.get("conversation_id"), skill=decision.skill, route=route,
            args={"params": request.params})
        for notice in await self.plugins.acall("before_turn", turn=turn):
            yield wire.Notice(type="notice", message=notice, level="warning")
        own = len(begun.utterance) + sum(len(m.content) for m in history)
        ctx = BackendContext(
            Metered(self.models, state.usage.add, carried=request.carried, own_chars=own),
            state.model,
            embedding_model=self.settings.models.embedding, history=history,
            documents=self._documents_for(request),
            config={**self.settings.skill_section(decision.skill),
                    "model": state.skill_model},
            params=request.params, cache_tag=ids.get("conversation_id"),
            local_files=request.local,
        )
        state.ctx = ctx
        running = self.plugins.run_skill(decision.skill, turn, ctx, ticket)
        state.output = self.guards.output(turn)
        async with closing_stream(running) as events:
            async for event in events:
                if isinstance(event, DeltaEvent):
                    async for released in self._release(state, event.text):
                        yield released
                    if state.output.stopped is not None:
                        state.status = "cancelled"  # what was released is kept
                        return
                elif isinstance(event, Progress):
                    yield wire.Progress(type="progress", done=event.done, total=event.total,
                                        message=event.message)
                elif isinstance(event, Notice):
                    yield wire.Notice(type="notice", message=event.message, level=event.level)
                elif isinstance(event, Citation):
                    cited = citation_event(event)
                    state.citations.append({k: v for k, v in cited.items() if k != "type"})
                    yield cited
                elif isinstance(event, ErrorEvent):
                    state.error = event
                elif isinstance(event, Done):
                    state.status = event.status
        async for released in self._release(state, "", final=True):
            yield released

    async def _release(self, state: _Running, text: str, final: bool = False,
                       ) -> AsyncIterator[wire.TurnEvent]:
        """``text`` of the reply through the guards' filters: what they decided, then what
        they released, which alone reaches the client and the store."""
        assert state.output is not None
        released, decided = await state.output.feed(text, final)
        for decision in decided:
            state.guard.append(decision)
            async for event in guard_events(decision):
                yield event
        if released:
            await state.recorder.add(released)
            yield wire.Delta(type="delta", text=released)

    async def _finalize(self, state: _Running) -> None:
        usage, decision = state.usage, state.decision
        state.timings = {**usage.timings,
                         "turn_s": round(time.perf_counter() - state.started, 4)}
        route: dict[str, Any] | None = (
            decision.to_dict() if decision else {
                "method": "blocked", "skill": None,
                "explanation": f"blocked by guard '{state.blocked.guard}'"}
            if state.blocked else None)
        if route is not None and state.guard:
            route["guard"] = [d.to_dict() for d in state.guard]
        await state.recorder.finalize(
            status=state.status, skill=decision.skill if decision else None, route=route,
            model=state.answered_by,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            timings=state.timings, confidence=state.confidence,
            citations=state.citations or None)

    async def _after_turn(self, state: _Running) -> None:
        """``after_turn``, once, when ``before_turn`` ran (``state.turn`` is set then)."""
        if state.turn is None or state.after_turn is not None or state.decision is None:
            return
        state.after_turn = []
        reply = Reply(state.recorder.text, state.status,  # type: ignore[arg-type]
                      state.decision.skill)
        state.after_turn = await self.plugins.acall("after_turn", turn=state.turn, reply=reply)

    async def _report(self, state: _Running) -> AsyncIterator[wire.TurnEvent]:
        """``after_turn``'s notices, then the last event: ``done`` or ``error``."""
        decision, usage, ids = state.decision, state.usage, state.ids
        if state.blocked is not None:
            yield cast(wire.TurnDone, {"type": "done", "status": "blocked",
                                       "timings": state.timings, "confidence": None, **ids})
            return
        assert decision is not None
        for notice in state.after_turn or []:
            yield wire.Notice(type="notice", message=notice, level="warning")
        if state.status == "error":
            yield error_event(state.error, ids)
            return
        ran_with = state.answered_by
        yield wire.TurnDone(
            type="done", status=state.status, model=ran_with, skill=decision.skill,
            usage=wire.TokenUsage(prompt_tokens=usage.prompt_tokens,
                                  completion_tokens=usage.completion_tokens),
            context=await self.models.context_length(ran_with), timings=state.timings,
            confidence=state.confidence, **ids)

    async def skill_model(self, skill: str, requested: str | None, default: str
                          ) -> tuple[str, str | None]:
        """The model ``skill`` answers with, and a notice when it is not the one configured.

        A model the request names wins: the caller asked for it. Else the skill's
        ``[skills.X] model`` (the shipped defaults are chosen for each skill's quality) when it
        can be loaded, else ``default`` — with a notice, once per daemon run, saying which
        model is missing and how to get it: a user who pulled only the default chat model
        still gets answers.
        """
        if requested:
            return requested, None
        configured = str(self.settings.skill_section(skill).get("model") or "")
        if (not configured or configured == default or configured in self.models.backends
                or self.models.engines.of(configured) is not None):  # a remote model's
            # absence is the engine's to tell, at the turn: 404 or engine_unavailable
            return configured or default, None
        from assistant.models import registry

        try:
            await asyncio.to_thread(registry.resolve, self.settings, configured)
        except ModelError as exc:
            if (skill, configured) in self._warned:
                return default, None
            self._warned.add((skill, configured))
            return default, (f"{skill} answers best with {configured}, which is not available "
                             f"({exc.message.rstrip('.')}); {default} answers instead. "
                             f"{exc.hint or ''}").strip()
        return configured, None

    async def _fit_context(
        self, store: Store, begun: _Begun, skill: str, model: str, params: GenerationParams,
    ) -> AsyncIterator[wire.Progress | wire.Notice | wire.Summary]:
        """Compact the conversation if it no longer fits: yields progress and ``summary``, and
        puts the summary into ``begun.path`` where the store put it."""
        found = self.plugins.skills.get(skill)
        if found is not None and not getattr(found, "uses_history", True):
            return
        chat_model = model
        n_ctx = await self.models.context_length(chat_model)
        if not n_ctx:
            return
        path = begun.path

        async def add_summary(before: str, text: str, tokens: int, seconds: float) -> Message:
            return await asyncio.to_thread(
                store.add_summary, before, text, model=chat_model, completion_tokens=tokens,
                timings={"summary_s": round(seconds, 3)})

        events: asyncio.Queue[wire.Progress] = asyncio.Queue()

        async def progress(done: int, total: int, message: str) -> None:
            await events.put(wire.Progress(type="progress", done=done, total=total,
                                           message=message))

        conversation = path[-1].conversation_id
        compactor = Compactor(self.models, chat_model, n_ctx, add_summary=add_summary,
                              cache_tag=conversation)
        job = asyncio.create_task(compactor.fit(path, max_tokens=params.max_tokens,
                                                progress=progress))
        try:
            async for event in while_running(job, events):
                yield event
            result = job.result()
        except CompactionFailed as exc:  # nothing was stored; the turn goes on uncompacted
            log.warning("compaction failed", extra={"error": exc.message})
            yield wire.Notice(type="notice", level="warning",
                              message=f"The conversation outgrew the context but could not be "
                                      f"summarized ({exc.message}); older turns may not fit.")
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
            yield wire.Summary(type="summary", message_id=result.summary.id,
                               text=result.summary.content, covers=result.covers,
                               tokens_before=result.tokens_before,
                               tokens_after=result.tokens_after, context=n_ctx)
