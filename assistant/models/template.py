"""Chat templates from GGUF metadata, rendered in a locked-down Jinja sandbox.

A template is untrusted input (CVE-2024-34359): it renders in an immutable sandbox with no
globals beyond the few helpers templates need, and one over 64 KB is refused outright.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_TEMPLATE_BYTES = 64 * 1024

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
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, autoescape=False
        )
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
            return self._template.render(
                messages=messages, add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token,
            )
        except SecurityError as exc:
            raise TemplateError(f"the chat template tried something unsafe: {exc}") from None
        except JinjaError as exc:
            raise TemplateError(f"the model's chat template failed: {exc}") from None


def _raise_exception(message: str) -> None:
    raise TemplateError(f"the chat template refused the conversation: {message}")
