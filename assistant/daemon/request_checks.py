"""Generation parameters refused before a request reaches a model: a schema, grammar or tool
list that cannot be enforced, and what a model's backend does not honour, each a 400 naming
the parameter (never silently ignored)."""

from __future__ import annotations

from collections.abc import Callable

from assistant.config import Settings
from assistant.daemon import openai_tools
from assistant.errors import RequestError
from assistant.models import structured
from assistant.models.backend import Backend, GenerationParams

# What a plugin backend must say it honours before it is given these: its flag, whether the
# request asks for it, the field a refusal names, and what the model cannot do.
_FEATURES: tuple[tuple[str, Callable[[GenerationParams], bool], str, str], ...] = (
    ("grammars", lambda p: p.json_schema is not None, "response_format",
     "enforce a JSON schema while decoding"),
    ("grammars", lambda p: p.grammar is not None, "grammar", "enforce a grammar while decoding"),
    ("tools", lambda p: p.calls_tools, "tools", "call tools"),
    ("choices", lambda p: p.n > 1, "n", "give more than one reply"),
    ("logprobs", lambda p: p.logprobs, "logprobs", "report log probabilities"),
    ("logit_bias", lambda p: bool(p.logit_bias), "logit_bias", "take a logit_bias"),
)


def check_params(settings: Settings, backend: Backend | None, model: str,
                 params: GenerationParams) -> None:
    """Raise a :class:`RequestError` for what of ``params`` ``model`` cannot honour;
    ``backend`` is its plugin backend or engine (None: the model host, which honours all)."""
    if params.json_schema is not None:  # a skill's, checked as a request's is
        structured.check(params.json_schema)
    if params.grammar is not None:
        structured.check_grammar(params.grammar)
    if params.calls_tools:
        openai_tools.check_params(params)
    if (not settings.models.tool_call_grammar and params.tool_choice == "auto"
            and any(t.strict for t in params.tools)):
        raise RequestError("tools: strict calls under tool_choice 'auto' need "
                           "models.tool_call_grammar, which this daemon's settings turn "
                           "off", code="unsupported_parameter", param="tools")
    for feature, asked, param, what in _FEATURES:
        if backend is not None and asked(params) and not getattr(backend, feature):
            raise RequestError(f"model {model!r} cannot {what}",
                               code="unsupported_parameter", param=param)
