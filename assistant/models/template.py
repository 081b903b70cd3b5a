"""Chat templates from GGUF metadata, rendered in a locked-down Jinja sandbox.

A template is untrusted input (CVE-2024-34359): it renders in an immutable sandbox with no
globals beyond the few helpers templates need, and one over 64 KB is refused outright. A render
is stopped after :data:`RENDER_TIMEOUT_S` (a template can loop for ever within the sandbox:
nested ``range`` loops), and ``*``/``**`` may not build huge values in one C call.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterator
from typing import Any

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
        from jinja2 import TemplateSyntaxError
        env = _environment()
        # Templates get data and the few helpers real templates use; lipsum, cycler and joiner
        # (whose __globals__ lead to os) are gone.
        kept = {name: env.globals[name] for name in ("range", "dict", "namespace")}
        env.globals.clear()
        env.globals.update(kept, raise_exception=_raise_exception)
        try:
            self._template = env.from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"the model's chat template does not parse: {exc}") from None
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

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        from jinja2 import TemplateError as JinjaError
        from jinja2.exceptions import SecurityError

        try:
            with _deadline(RENDER_TIMEOUT_S):
                text: str = self._template.render(
                    messages=messages, add_generation_prompt=add_generation_prompt,
                    bos_token=self.bos_token, eos_token=self.eos_token,
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
