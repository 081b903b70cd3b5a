"""Chat templates from GGUF metadata, rendered in a locked-down Jinja sandbox.

A template is untrusted input (CVE-2024-34359): it renders in an immutable sandbox with no
globals beyond the few helpers templates need, and one over 64 KB is refused outright. A render
is stopped after :data:`RENDER_TIMEOUT_S` (a template can loop for ever within the sandbox:
nested ``range`` loops), and ``*``/``**`` may not build huge values in one C call.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

from assistant.models import tool_calls

MAX_TEMPLATE_BYTES = 64 * 1024
RENDER_TIMEOUT_S = 3.0
MAX_PRODUCT = 1 << 20  # longest string or list a template may build with * (items)
MAX_EXPONENT = 64

# Used when a model carries no template of its own (ChatML, which most small models follow).
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class TemplateError(ValueError):
    pass


class ChatTemplate:
    def __init__(self, source: str, *, bos_token: str, eos_token: str, source_name: str) -> None:
        if len(source.encode("utf-8")) > MAX_TEMPLATE_BYTES:
            raise TemplateError(
                f"the model's chat template is over {MAX_TEMPLATE_BYTES // 1024} KB; refused"
            )
        from jinja2 import TemplateSyntaxError, meta
        env = _environment()
        # Templates get data and the few helpers real templates use; lipsum, cycler and joiner
        # (whose __globals__ lead to os) are gone.
        kept = {name: env.globals[name] for name in ("range", "dict", "namespace")}
        env.globals.clear()
        env.globals.update(kept, raise_exception=_raise_exception)
        env.filters["tojson"] = _tojson
        try:  # parsed once: compiled, and searched for the variables it reads
            parsed = env.parse(source)
            self._template = env.from_string(parsed)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"the model's chat template does not parse: {exc}") from None
        # Whether it offers functions itself (qwen2.5's does); else tool_calls does.
        self.knows_tools = "tools" in meta.find_undeclared_variables(parsed)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.source_name = source_name

    @classmethod
    def from_metadata(
        cls, metadata: dict[str, str], token_text: Callable[[int], str]
    ) -> ChatTemplate:
        def special(key: str) -> str:
            value = metadata.get(key)
            return token_text(int(value)) if value not in (None, "") else ""

        source = metadata.get("tokenizer.chat_template")
        return cls(
            source or CHATML,
            bos_token=special("tokenizer.ggml.bos_token_id"),
            eos_token=special("tokenizer.ggml.eos_token_id"),
            source_name="gguf" if source else "chatml-fallback",
        )

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt for ``messages``, offering ``tools`` (name, description, parameters).

        A template that knows tools gets them, and the calls of earlier assistant messages
        with their arguments as objects (as Hugging Face's templates expect); any other gets
        :func:`~assistant.models.tool_calls.fallback_messages`.
        """
        from jinja2 import TemplateError as JinjaError
        from jinja2.exceptions import SecurityError

        extra: dict[str, Any] = {}
        if self.knows_tools:
            messages = [_with_argument_objects(m) for m in messages]
            if tools:
                extra["tools"] = tool_calls.as_template_tools(tools)
        elif tools or any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
            messages = tool_calls.fallback_messages(messages, tools)
        try:
            with _deadline(RENDER_TIMEOUT_S):
                text: str = self._template.render(
                    messages=messages, add_generation_prompt=add_generation_prompt,
                    bos_token=self.bos_token, eos_token=self.eos_token, **extra,
                )
            return text
        except _RenderTimeout:
            raise TemplateError(
                f"the model's chat template did not finish rendering in {RENDER_TIMEOUT_S:g} s; "
                "it loops or is far too slow"
            ) from None
        except SecurityError as exc:
            raise TemplateError(f"the chat template tried something unsafe: {exc}") from None
        except JinjaError as exc:
            raise TemplateError(f"the model's chat template failed: {exc}") from None


def _with_argument_objects(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls")
    if not calls:
        return message
    return {**message, "tool_calls": [
        {**c, "function": {**c["function"],
                           "arguments": tool_calls.arguments_object(c["function"]["arguments"])}}
        for c in calls]}


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """Hugging Face's ``tojson``, which chat templates are written for (Jinja's own escapes
    ``<``, ``>``, ``&`` and ``'`` for HTML). A template is untrusted: an indent or separators
    of any size would build huge strings in one C call, past the render's deadline."""
    from jinja2.exceptions import SecurityError

    small_int = isinstance(indent, int) and not isinstance(indent, bool) and 0 <= indent <= 16
    if not (indent is None or small_int or (isinstance(indent, str) and len(indent) <= 16)):
        raise SecurityError(f"tojson: indent {str(indent)[:20]!r} is not 0 to 16 (or text of "
                            "at most 16 characters)")
    if separators is not None and not (
            isinstance(separators, list | tuple) and len(separators) == 2
            and all(isinstance(x, str) and len(x) <= 4 for x in separators)):
        raise SecurityError("tojson: separators must be two strings of at most 4 characters")
    try:
        return json.dumps(value, ensure_ascii=bool(ensure_ascii), indent=indent,
                          separators=separators, sort_keys=bool(sort_keys))
    except (TypeError, ValueError) as exc:
        raise SecurityError(f"tojson: {exc}") from None


def _raise_exception(message: str) -> None:
    raise TemplateError(f"the chat template refused the conversation: {message}")


def _environment() -> Any:
    from jinja2 import Undefined
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class SafeUndefined(Undefined):
        """An unsafe attribute fails wherever it is used; Jinja would print it as ''
        (``'{0.__class__}'|attr('format')``), hiding the attempt."""

        __slots__ = ()

        def _unsafe(self) -> bool:
            return self._undefined_exception is SecurityError

        def __str__(self) -> str:
            if self._unsafe():
                self._fail_with_undefined_error()
            return super().__str__()

        def __format__(self, spec: str) -> str:
            return str(self).__format__(spec)

        def __bool__(self) -> bool:
            if self._unsafe():
                self._fail_with_undefined_error()
            return super().__bool__()

    class Environment(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is over {MAX_EXPONENT}")
            if operator == "*":
                for seq, times in ((left, right), (right, left)):
                    if (isinstance(seq, str | list | tuple) and isinstance(times, int)
                            and len(seq) * times > MAX_PRODUCT):
                        raise SecurityError(f"a value of {len(seq) * times} items is too large")
            return super().call_binop(context, operator, left, right)

    return Environment(trim_blocks=True, lstrip_blocks=True, autoescape=False,
                       undefined=SafeUndefined)


class _RenderTimeout(BaseException):
    """Raised inside the rendering thread when its deadline passes (not an Exception, so that
    no ``except Exception`` in between can swallow it)."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`_RenderTimeout` in this thread if the block runs past ``seconds``.

    The exception is delivered between bytecodes, which is where a Jinja render spends its
    time; the lock makes sure it is never delivered after the block has ended.
    """
    target = threading.get_ident()
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(target), ctypes.py_object(_RenderTimeout))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
            timer.cancel()
            if state["fired"]:
                # Not yet delivered if the block ended first: take it back.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)
