"""The Skill API: what a skill is, what it receives, and the events it yields.

A plugin registers :class:`Skill` instances through ``register_skills``. For each routed turn the
daemon calls ``skill.run(turn, ctx)``, an async generator of :data:`Event` objects, under a
timeout; :func:`execute` is that runner, shared by the daemon, the CLI and the test kit.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from assistant.breaker import fault_of
from assistant.error_codes import http_error
from assistant.errors import AssistantError, RequestError
from assistant.models.backend import ChatMessage, GenerationParams

Status = Literal["complete", "cancelled", "error"]


# -- events -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    """Work done so far, e.g. chunks summarised: ``done`` of ``total``."""

    done: int
    total: int
    message: str = ""
    type: ClassVar[str] = "progress"


@dataclass(frozen=True)
class DeltaEvent:
    """A piece of the reply text, in order."""

    text: str
    type: ClassVar[str] = "delta"


@dataclass(frozen=True)
class Notice:
    """Something the user should see that is not part of the reply (a timeout, a plugin error)."""

    message: str
    level: Literal["info", "warning"] = "info"
    type: ClassVar[str] = "notice"


@dataclass(frozen=True)
class Citation:
    """A source the reply cites as ``[number]``: ``source`` says where it is (document,
    section, line), ``support`` is the sentence of the passage that supports the answer and
    ``span`` its start and end in the passage's text (empty and None when none was picked).
    The daemon sends it to the client (a ``citation`` event) and stores it with the reply."""

    number: int
    source: str
    support: str = ""
    span: tuple[int, int] | None = None
    type: ClassVar[str] = "citation"


@dataclass(frozen=True)
class ErrorEvent:
    """The turn failed; the reply so far is kept with status ``error``.

    ``code`` is the error table's (:mod:`assistant.error_codes`): ``skill_failed`` for the
    skill's own failure, the model's when it refused (``context_length_exceeded``…). ``error``
    is the exception the skill raised, when one did: whose fault it was is read from it
    (:func:`assistant.breaker.fault_of`).
    """

    message: str
    code: str = "skill_failed"
    error: BaseException | None = field(default=None, compare=False, repr=False)
    type: ClassVar[str] = "error"


@dataclass(frozen=True)
class Done:
    """The last event of every run. ``timeout`` says what the skill timeout cut: the skill's
    own code (``"skill"``) or a wait for a model call of its context (``"model"``: a long
    queue or generation, not the skill's failure)."""

    status: Status = "complete"
    timeout: Literal["skill", "model"] | None = None
    type: ClassVar[str] = "done"


Event = Progress | DeltaEvent | Notice | Citation | ErrorEvent | Done


# -- turn and reply ---------------------------------------------------------------------------

@dataclass
class Turn:
    """One user turn as a skill sees it.

    ``text`` is the utterance with any explicit command removed (``/translate de hi`` → ``de hi``);
    ``raw_text`` is what the user typed. ``args`` holds explicit arguments a client sent.
    """

    text: str
    raw_text: str = ""
    conversation_id: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    language: str | None = None
    skill: str | None = None
    route: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.raw_text:
            self.raw_text = self.text


@dataclass
class Reply:
    """What a skill produced for a turn, as ``after_turn`` receives it."""

    text: str
    status: Status
    skill: str
    notices: list[str] = field(default_factory=list)


# -- context ----------------------------------------------------------------------------------

class DocumentSearch(Protocol):
    """The user's document index (issue: qa). Absent (``None``) until the store provides it."""

    async def search(self, query: str, k: int = 5) -> list[dict[str, Any]]: ...


class SkillContext(ABC):
    """Everything a skill may use. The daemon builds one per turn.

    ``history`` holds the conversation's earlier messages (oldest first), ``documents`` the
    document search or ``None``, ``config`` the skill's own ``[skills.<name>]`` section.
    ``local_files`` is True only for a turn that came over the daemon's Unix socket (this
    machine's user): only then may a skill read a file the text names, by its absolute path
    (the daemon does not know the client's directory), with
    :func:`assistant.documents.reader.read_document`'s rules (regular files, size cap).
    """

    history: Sequence[ChatMessage]
    documents: DocumentSearch | None
    config: dict[str, Any]
    local_files: bool = False
    _sink: Callable[[Event], None] | None = None

    @property
    def in_model_call(self) -> bool:
        """Whether a model call of this context is running now: the skill timeout firing then
        cut a wait for the model, not the skill's own code."""
        return False

    @abstractmethod
    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams | None = None,
        model: str | None = None,
    ) -> AsyncIterator[str]:
        """Stream the model's reply to ``messages`` as text pieces (default model if ``None``)."""

    @abstractmethod
    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One L2-normalised vector per text, from the embedding model."""

    @abstractmethod
    def sentences(self, text: str, lang: str | None = None) -> list[str]:
        """``text`` split into sentences, in order."""

    @abstractmethod
    def detect_language(self, text: str) -> str:
        """An ISO 639-1 code for ``text`` (``"und"`` when unsure)."""

    async def count_tokens(
        self, messages: Sequence[ChatMessage], model: str | None = None
    ) -> int:
        """Tokens ``messages`` take as a prompt of the chat model (default model if ``None``).

        This default cannot see a tokenizer: it overestimates (one token per 2 UTF-8 bytes, plus
        a few per message for the chat template), so a prompt that fits by it fits the model.
        """
        return sum(len(m.content.encode("utf-8")) // 2 + 8 for m in messages)

    async def context_length(self, model: str | None = None) -> int | None:
        """The context, in tokens, the chat model runs with (prompt and reply together);
        ``None`` when unknown, as in this default."""
        return None

    def progress(self, done: int, total: int, message: str = "") -> None:
        """Report progress; it reaches the client as a ``progress`` event."""
        if self._sink is not None:
            self._sink(Progress(done, total, message))


# -- skills -----------------------------------------------------------------------------------

class Skill(ABC):
    """A thing a turn can be routed to. Subclass, set the class attributes, implement ``run``.

    ``examples`` are utterances the router compares a turn against; give several per language.
    ``threshold`` overrides the router's similarity threshold for this skill (``None``: default).
    ``uses_history`` says whether the skill gives the model the conversation so far
    (``ctx.history``); only for those does the daemon compact a conversation that no longer
    fits the context into a summary. ``structured_output`` says whether its reply follows a
    JSON schema or grammar the request gives (``ctx.params``: the skill generates with them);
    a turn asking for one (OpenAI's ``response_format`` to model ``assistant``) that routes to
    a skill without it is refused, never answered unshaped. ``own_loop`` (default) runs
    ``run`` on a thread with an event loop of its own, its ``ctx`` calls carried to the
    daemon's loop, so that a blocking call in it stalls only its own turn; a skill that uses
    asyncio objects made on the daemon's loop (a client opened in ``startup``) sets it
    ``False`` and must then never block.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    examples: ClassVar[Sequence[str]] = ()
    threshold: ClassVar[float | None] = None
    uses_history: ClassVar[bool] = True
    structured_output: ClassVar[bool] = False
    own_loop: ClassVar[bool] = True

    @abstractmethod
    def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        """Yield events (``DeltaEvent`` for text, ``Progress``, ``Notice``) for ``turn``."""


async def execute(
    skill: Skill, turn: Turn, ctx: SkillContext, timeout: float = 60.0
) -> AsyncIterator[Event]:
    """Run ``skill`` and yield its events, ending with exactly one :class:`Done`.

    The skill runs in its own task, so a skill that blocks the await chain cannot stall the
    caller: after ``timeout`` seconds it is cancelled with a visible notice. A skill with
    ``own_loop`` runs on a thread and event loop of its own (:mod:`assistant.skill_thread`), so
    that not even a blocking call in it stalls the caller's loop or the timeout. An exception
    becomes an :class:`ErrorEvent`. Closing this iterator cancels the skill.
    """
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    failure: list[BaseException] = []
    loop = asyncio.get_running_loop()

    async def produce(context: SkillContext, put: Callable[[Event | None], None]) -> None:
        try:
            async for event in skill.run(turn, context):
                put(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure.append(exc)
        finally:
            put(None)

    task: asyncio.Task[None] | None = None
    thread = None
    if skill.own_loop:
        from assistant.skill_thread import SkillThread, ThreadedContext, thread_safe

        threaded = ThreadedContext(ctx, loop, queue.put_nowait)
        thread = SkillThread(skill.name)
        thread.start(lambda: produce(threaded, thread_safe(loop, queue.put_nowait)))
    else:
        ctx._sink = queue.put_nowait
        task = asyncio.create_task(produce(ctx, queue.put_nowait), name=f"skill:{skill.name}")
    deadline = loop.time() + timeout
    status: Status = "complete"
    cut: Literal["skill", "model"] | None = None
    try:
        while True:
            remaining = deadline - loop.time()
            try:
                event = await asyncio.wait_for(queue.get(), max(remaining, 0))
            except TimeoutError:
                cut = "model" if ctx.in_model_call else "skill"
                if task is not None:
                    task.cancel()
                status = "cancelled"
                waiting = " (waiting for the model)" if cut == "model" else ""
                yield Notice(f"skill '{skill.name}' took longer than {timeout:g} s{waiting} "
                             "and was cancelled.", "warning")
                break
            if event is None:
                break
            if not isinstance(event, Done):  # the runner alone ends the stream
                yield event
        if failure:
            status = "error"
            yield error_event(skill.name, failure[0])
        yield Done(status, cut)
    finally:
        ctx._sink = None
        if thread is not None:  # not awaited: a blocking call holds its thread, not this loop
            thread.cancel()
        elif task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def error_event(skill: str, exc: BaseException) -> ErrorEvent:
    """The event for ``exc`` raised by ``skill``: the caller's and the infrastructure's errors
    keep their own message and code (the skill did not fail); the skill's own name it."""
    if fault_of(exc) == "skill" or not isinstance(exc, AssistantError):
        return ErrorEvent(f"skill '{skill}' failed: {type(exc).__name__}: {exc}", error=exc)
    code = exc.code if isinstance(exc, RequestError) else http_error(exc)[1]["error"]["code"]
    return ErrorEvent(exc.message, code, error=exc)


async def collect(events: AsyncIterator[Event]) -> tuple[str, list[Event]]:
    """Drain ``events``: the reply text (deltas joined) and every event, in order."""
    seen: list[Event] = []
    async for event in events:
        seen.append(event)
    return "".join(e.text for e in seen if isinstance(e, DeltaEvent)), seen
