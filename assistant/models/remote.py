"""Remote engines: any OpenAI-compatible server, configured as ``[engines.NAME]``.

A :class:`RemoteEngine` is a :class:`~assistant.models.backend.Backend` built from settings, not
from a plugin: its models are ``NAME/MODEL`` (the engine's own name after the slash), and the
model manager sends every request for them here. Replies stream through as they come: each
chunk of the engine's SSE stream becomes a :class:`~assistant.models.backend.Delta` at once,
and closing that stream closes the HTTP response, so the engine sees the client leave. A
caller that waits for the whole reply (``GenerationParams.streamed`` false) gets it asked for
unstreamed.

Failures become the errors of :mod:`assistant.errors`, never a silent retry: the engine
unreachable, stopped mid-reply, or busy (its 429 / 503, with its ``Retry-After``) is
:class:`~assistant.errors.EngineUnavailable`; a refused key (401 / 403), or a key variable that
is not set, is :class:`~assistant.errors.EngineRefusedKey` naming the variable; what it refuses
of a request (400) is a :class:`~assistant.errors.RequestError` carrying its message.

:meth:`RemoteEngine.watch` asks the engine's ``/models`` at start, then every
:data:`REFRESH_S` while it answers and with backoff while it does not: the listing, the state
``/health`` shows, and the ``Retry-After`` of a refusal come from there. A request is always
tried, so an engine that is back serves the next one without waiting for the watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

import httpx

from assistant.config import EngineSettings
from assistant.errors import (
    AssistantError,
    EngineRefusedKey,
    EngineUnavailable,
    ModelError,
    ModelNotFound,
    RequestError,
)
from assistant.models.backend import Backend, ChatMessage, Delta, GenerationParams, ModelInfo
from assistant.models.remote_tokens import EngineTokenizer, estimate
from assistant.models.remote_wire import (
    chat_text,
    error_fields,
    finish_reason,
    message_body,
    normalised,
    sampling_body,
    seconds,
    server_root,
)

EngineState = Literal["unknown", "up", "down", "key_refused"]

REFRESH_S = 60.0  # between listings while the engine answers
BACKOFF_MAX_S = 60.0  # the longest wait between tries while it does not
CONNECT_S = 5.0  # of the request's timeout, the most connecting may take


class RemoteEngine(Backend):
    """One engine: its settings, its HTTP client, what it listed and how it is doing."""

    # Passed through as OpenAI's fields; an engine that cannot honour one refuses it (400).
    choices = logprobs = logit_bias = True
    # Not passed: engines enforce schemas, grammars and tool calls each in a way of their own
    # (or not at all), so such a request is refused here rather than answered unconstrained.
    grammars = tools = False

    def reports_logprobs(self, model: str) -> bool:
        # A /v1 client that asks for logprobs gets the engine's. A skill's call does not ask
        # for them (the reply's confidence): an engine that refuses the field would fail
        # the turn, and a figure is not worth that; such replies carry no confidence.
        return False

    def __init__(self, name: str, settings: EngineSettings,
                 environ: Mapping[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.settings = settings
        self.prefix = f"{name}/"
        self.base_url = settings.base_url.rstrip("/")
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.state: EngineState = "unknown"
        self.listed: list[str] | None = None  # the engine's /models, once it answered
        self.llama_cpp = False  # its /models said owned_by "llamacpp": llama.cpp's server
        self.tokenizer = EngineTokenizer(server_root(self.base_url))
        self.error: str | None = None
        self.failures = 0  # in a row
        self.checked_at: float | None = None  # wall-clock time of the last answer or failure
        self.retry_at: float | None = None  # on the clock: the watch's next try while down
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()

    # -- names --------------------------------------------------------------------------------

    def owns(self, model: str) -> bool:
        return model.startswith(self.prefix)

    def serves(self, model: str) -> bool | None:
        """Whether the engine serves ``model`` (a name of ours); None when it cannot be told
        yet (no ``models`` configured, and the engine has not listed its own)."""
        names = self.settings.models or self.listed
        if names is None:
            return None
        return model[len(self.prefix):] in names

    def names(self) -> list[str]:
        return [self.prefix + n for n in (self.settings.models or self.listed or [])]

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(name, "chat", self.settings.context_length,
                          owned_by=f"engine {self.name}",
                          details={"remote": True, "engine": self.name, "state": self.state})
                for name in self.names()]

    # -- health -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        retry = None if self.retry_at is None else max(0.0, self.retry_at - self.clock())
        return {"name": self.name, "base_url": self.base_url, "state": self.state,
                "models": self.names(), "error": self.error, "failures": self.failures,
                "checked_at": self.checked_at,
                "retry_in_s": None if retry is None else round(retry, 1),
                "api_key_env": self.settings.api_key_env or None,
                "tokenizer": self.tokenizer.kind, "cache_prompt": self.caches_prompt()}

    def problem(self) -> str | None:
        """What is wrong with the engine now, one line; None while it answers."""
        if self.state not in {"down", "key_refused"}:
            return None
        retry = self.status()["retry_in_s"]
        when = f"; asked again in {max(1, round(retry))} s" if retry is not None else ""
        return f"{self.error}{when}"  # the error names the engine

    def _backoff(self) -> float:
        return min(BACKOFF_MAX_S, 2.0 ** max(self.failures - 1, 0))

    def _worked(self) -> None:
        self.state, self.error, self.failures = "up", None, 0
        self.checked_at, self.retry_at = time.time(), None

    def _failed(self, exc: EngineUnavailable | EngineRefusedKey) -> None:
        self.state = "key_refused" if isinstance(exc, EngineRefusedKey) else "down"
        self.error, self.failures = exc.message, self.failures + 1
        self.checked_at, self.retry_at = time.time(), self.clock() + self._backoff()
        self._wake.set()  # the watch re-lists as soon as its backoff allows

    async def watch(self) -> None:
        """List the engine's models now, then again every :data:`REFRESH_S` while it answers,
        after a backoff (1 s doubling to :data:`BACKOFF_MAX_S`) while it does not. Runs until
        cancelled."""
        while True:
            with contextlib.suppress(AssistantError):  # recorded: the state, the error
                await self.refresh()
            wait = REFRESH_S if self.state == "up" else self._backoff()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
                await asyncio.sleep(max(0.0, (self.retry_at or 0.0) - self.clock()))
            except TimeoutError:
                pass

    async def refresh(self) -> list[str]:
        """Ask the engine's ``/models``; the names it lists (its own, without our prefix)."""
        try:
            body = await self._call("GET", "/models")
            names = [str(m["id"]) for m in body["data"]]
            owners = {m.get("owned_by") for m in body["data"] if isinstance(m, dict)}
        except (EngineUnavailable, EngineRefusedKey):
            raise
        except (AssistantError, KeyError, TypeError) as exc:
            why = exc.message if isinstance(exc, AssistantError) else "no list of models"
            raise self._note(EngineUnavailable(
                f"engine '{self.name}' does not list its models at {self.base_url}/models "
                f"({why}); engines.{self.name}.base_url is the API root, up to its /v1",
                self.name, self.retry_after_next())) from None
        self.listed, self.llama_cpp = names, "llamacpp" in owners
        return names

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- requests -----------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = self.settings.timeout
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout, connect=min(CONNECT_S, timeout)),
                limits=httpx.Limits(max_connections=self.settings.max_concurrency + 2),
                transport=self._transport)
        return self._client

    def _headers(self) -> dict[str, str]:
        variable = self.settings.api_key_env
        if not variable:
            return {}
        key = self.environ.get(variable, "")
        if not key:
            raise self._note(EngineRefusedKey(
                f"engine '{self.name}' needs a key in the environment variable {variable}, "
                "which is not set in the daemon's environment", self.name, variable))
        return {"Authorization": f"Bearer {key}"}

    def _note(self, exc: Exception) -> Exception:
        if isinstance(exc, EngineUnavailable | EngineRefusedKey):
            self._failed(exc)
        return exc

    def _unreachable(self, exc: httpx.HTTPError, doing: str) -> Exception:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return self._note(EngineUnavailable(
            f"engine '{self.name}' {doing} ({self.base_url}): {reason}", self.name,
            self.retry_after_next()))

    def retry_after_next(self) -> int:
        """The Retry-After of a failure about to be counted."""
        return max(1, math.ceil(min(BACKOFF_MAX_S, 2.0 ** self.failures)))

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self.client.request(method, self.base_url + path, json=body,
                                                 headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, "cannot be reached") from None
        if response.status_code >= 400:
            raise self._refusal(response.status_code, response.headers, response.content,
                                path, body)
        try:
            data = response.json()
        except ValueError:
            raise self._note(ModelError(
                f"engine '{self.name}' answered {path} with something other than JSON")) from None
        self._worked()
        return data

    def _refusal(self, status: int, headers: httpx.Headers, content: bytes, path: str,
                 body: Any) -> Exception:
        """The error an engine's HTTP error answer stands for (see the module's docstring)."""
        message, code, param = error_fields(content)
        said = f"{status} {httpx.codes.get_reason_phrase(status)}".strip()
        if message:
            said += f": {message}"
        model = body.get("model") if isinstance(body, dict) else None
        if status in {401, 403}:
            variable = self.settings.api_key_env
            what = (f"the key in {variable}" if variable else
                    f"requests without a key (engines.{self.name}.api_key_env is not set)")
            return self._note(EngineRefusedKey(
                f"engine '{self.name}' refused {what} ({said})", self.name, variable))
        if status in {429, 502, 503, 504}:
            retry = seconds(headers.get("retry-after")) or self.retry_after_next()
            busy = "is busy" if status in {429, 503} else "is unavailable"
            return self._note(EngineUnavailable(f"engine '{self.name}' {busy} ({said})",
                                                self.name, retry))
        self._worked()  # it answered: what it refused is the request's, not its state
        if status == 404 and model is not None:
            return ModelNotFound(f"engine '{self.name}' has no model {model!r} ({said})",
                                 "`assistant models list` shows the engines' models.")
        if 400 <= status < 500:
            return RequestError(f"engine '{self.name}' refused the request ({said})",
                                status=400 if status != 413 else 413,
                                code=code or "invalid_request", param=param)
        return ModelError(f"engine '{self.name}' failed on {path} ({said})")

    # -- the Backend contract -----------------------------------------------------------------

    def chat(self, model: str, messages: list[ChatMessage], params: GenerationParams,
             ) -> AsyncIterator[Delta]:
        body = {"model": self._remote(model), "messages": [message_body(m) for m in messages],
                **sampling_body(params)}
        if not params.streamed:
            return self._whole("/chat/completions", body,
                               lambda c: str((c.get("message") or {}).get("content") or ""))
        return self._stream("/chat/completions", body, chat_text)

    def complete(self, model: str, prompt: str, params: GenerationParams,
                 ) -> AsyncIterator[Delta]:
        body = {"model": self._remote(model), "prompt": prompt, **sampling_body(params)}
        text: Callable[[dict[str, Any]], str] = lambda c: str(c.get("text") or "")  # noqa: E731
        return (self._stream if params.streamed else self._whole)("/completions", body, text)

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        body = await self._call("POST", "/embeddings",
                                {"model": self._remote(model), "input": texts})
        try:
            rows = sorted(body["data"], key=lambda d: int(d.get("index", 0)))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"engine '{self.name}' answered /embeddings without vectors "
                             f"({type(exc).__name__}: {exc})") from None
        if len(vectors) != len(texts):
            raise ModelError(f"engine '{self.name}' gave {len(vectors)} vectors for "
                             f"{len(texts)} texts")
        return [normalised(v) for v in vectors]

    async def count_tokens(self, model: str, messages: list[ChatMessage]) -> int:
        """By the engine's tokenizer when it has one (:mod:`assistant.models.remote_tokens`),
        else an upper bound."""
        counted = None
        with contextlib.suppress(EngineRefusedKey):  # no key: nothing to ask with
            counted = await self.tokenizer.count(self.client, self._headers(),
                                                 self._remote(model), messages)
        return counted if counted is not None else estimate(messages)

    async def context_length(self, model: str) -> int | None:
        return self.settings.context_length or None

    def caches_prompt(self) -> bool:
        """Whether requests ask the engine to keep its prompt cache (``cache_prompt``)."""
        setting = self.settings.cache_prompt
        return self.llama_cpp if setting == "auto" else setting

    def _remote(self, model: str) -> str:
        return model[len(self.prefix):] if self.owns(model) else model

    async def _stream(self, path: str, body: dict[str, Any],
                      text_of: Callable[[dict[str, Any]], str]) -> AsyncIterator[Delta]:
        """POST ``body`` with ``stream`` on; each chunk's pieces as deltas, the ends last."""
        deadline = self.clock() + self.settings.timeout
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        if self.caches_prompt():
            body["cache_prompt"] = True
        request = self.client.build_request("POST", self.base_url + path, json=body,
                                            headers=self._headers())
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, "cannot be reached") from None
        try:
            if response.status_code >= 400:
                content = await response.aread()
                raise self._refusal(response.status_code, response.headers, content, path, body)
            self._worked()
            ends: dict[int, Delta] = {}
            pieces: dict[int, int] = {}
            used: dict[str, Any] = {}
            try:
                async for line in response.aiter_lines():
                    if self.clock() > deadline:
                        raise self._note(EngineUnavailable(
                            f"engine '{self.name}' took longer than its timeout "
                            f"({self.settings.timeout:g} s) to reply", self.name,
                            self.retry_after_next()))
                    if not line.startswith("data:"):
                        continue  # comments (keep-alive pings), event names, blank lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = self._chunk(data)
                    used = chunk.get("usage") or used
                    for choice in chunk.get("choices") or []:
                        index = int(choice.get("index") or 0)
                        text = text_of(choice)
                        logprobs = (choice.get("logprobs") or {}).get("content")
                        if text or logprobs:
                            pieces[index] = pieces.get(index, 0) + 1
                            yield Delta(text, index=index, logprobs=logprobs)
                        if choice.get("finish_reason"):
                            ends[index] = Delta("", finish_reason=finish_reason(choice),
                                                index=index)
            except httpx.HTTPError as exc:
                raise self._unreachable(exc, "stopped mid-reply") from None
            if not ends:
                raise self._note(EngineUnavailable(
                    f"engine '{self.name}' ended the reply without finishing it", self.name,
                    self.retry_after_next()))
            prompt = int(used.get("prompt_tokens") or 0)
            completion = used.get("completion_tokens")
            for i, (index, end) in enumerate(sorted(ends.items())):
                end.prompt_tokens = prompt
                # Without the engine's usage, a streamed piece counts as a token.
                end.completion_tokens = (int(completion) if i == 0 else 0) \
                    if completion is not None else pieces.get(index, 0)
                yield end
        finally:
            await response.aclose()

    async def _whole(self, path: str, body: dict[str, Any],
                     text_of: Callable[[dict[str, Any]], str]) -> AsyncIterator[Delta]:
        """POST ``body`` unstreamed, for a caller that waits for the whole reply anyway: the
        engine spares its stream's cost (llama-cpp-python's server: 4 ms a short reply), and
        we the chunks'. A caller that leaves still closes the connection; llama.cpp's server
        and vLLM stop then, llama-cpp-python's finishes the reply unread."""
        if self.caches_prompt():
            body = {**body, "cache_prompt": True}
        answer = await self._call("POST", path, body)
        try:
            choices = sorted(answer["choices"], key=lambda c: int(c.get("index") or 0))
            used = answer.get("usage") or {}
            replies = [(int(c.get("index") or 0), text_of(c),
                        (c.get("logprobs") or {}).get("content"), finish_reason(c))
                       for c in choices]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"engine '{self.name}' answered {path} without its choices "
                             f"({type(exc).__name__}: {exc})") from None
        for index, text, logprobs, _ in replies:
            if text or logprobs:
                yield Delta(text, index=index, logprobs=logprobs)
        for i, (index, _, _, finish) in enumerate(replies):
            completion = used.get("completion_tokens")
            yield Delta("", finish_reason=finish, index=index,
                        prompt_tokens=int(used.get("prompt_tokens") or 0),
                        completion_tokens=(int(completion) if i == 0 else 0)
                        if completion is not None else 0)

    def _chunk(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ModelError(f"engine '{self.name}' sent a chunk that is not JSON: "
                             f"{data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise ModelError(f"engine '{self.name}' sent a chunk that is not an object")
        if chunk.get("error"):
            message = error_fields(json.dumps(chunk).encode())[0] or "no message"
            raise ModelError(f"engine '{self.name}' ended the reply with an error: {message}")
        return chunk

