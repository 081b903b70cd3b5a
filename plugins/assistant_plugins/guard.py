"""The bundled guards: secrets redacted, blocked topics refused. On by default.

``secrets`` (config ``[guards.secrets]``: ``enabled``, ``off``, ``patterns``) replaces what
looks like a secret with ``[redacted:KIND]`` in what the user types, before it is stored or
given to any model, and in the reply as it streams, before the client or the store sees it:

- ``api_key``: keys of the usual shapes (OpenAI and Anthropic ``sk-…``, GitHub ``ghp_…`` and
  ``github_pat_…``, AWS ``AKIA…``, Slack ``xox…-``, Google ``AIza…``, Stripe ``sk_live_…``,
  Hugging Face ``hf_…``);
- ``private_key``: a ``-----BEGIN … PRIVATE KEY-----`` block, to its end (or to the end of the
  text when it has none);
- ``card``: 13 to 19 digits, spaces or dashes between them, that pass the Luhn check;
- ``pattern``: each of the user's ``patterns`` (Python regular expressions, within a line).

While the reply streams, its end is held back while it could still grow into a secret (the
start of a key of one of those shapes, a run of digits and spaces, a private-key block's
marker or open block, the current line while ``patterns`` are set) until more text shows
what it is; other text goes on at once.

``topics`` (config ``[guards.topics]``: ``enabled``, ``blocked``, ``reason``) refuses a turn
that mentions a blocked word or phrase (case-insensitive, whole words), with ``reason``, and
stops a reply that starts to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assistant import Turn, hookimpl
from assistant.guards import Filtered, Guard, Verdict

KINDS = ("api_key", "private_key", "card", "pattern")

_API_KEYS = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|hf_[A-Za-z0-9]{30,}"
    r")(?![\w-])")
_KEY_BLOCK = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?"
                        r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.S)
_KEY_OPEN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*\Z", re.S)
_KEY_START = re.compile(r"-----BEGIN")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
# What may still grow into a secret at the end of a streamed reply: a key's start (a run of
# key characters from a point a key may begin at), a run of digits, a key block's marker.
_RUN = re.compile(r"[\w+/=.-]*\Z")
_DIGITS = re.compile(r"\d[\d -]*\Z")
_PREFIXES = ("sk-", "sk_", "rk_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
             "AKIA", "ASIA", "xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "AIza",
             "hf_")
_MARKER = "-----BEGIN"
MAX_HOLD = 4096  # characters held back at most: past it, a piece is released as it is


def luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


class SecretsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    enabled: bool = True
    off: list[str] = []
    patterns: list[str] = []

    @field_validator("off")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kind {unknown[0]!r}; kinds: {', '.join(KINDS)}")
        return value

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for i, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"patterns[{i}] {pattern!r} is not a regular expression: "
                                 f"{exc}") from None
        return value


def _settings(model: type[BaseModel], config: dict[str, Any], section: str) -> Any:
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"[guards.{section}] {key}: {err['msg']}") from None


class Secrets(Guard):
    name = "secrets"

    def __init__(self) -> None:
        self.rules: list[tuple[str, Callable[[str, bool], list[tuple[int, int]]]]] = []
        self.patterns: list[re.Pattern[str]] = []
        self.configure({})

    def configure(self, config: dict[str, Any]) -> None:
        settings: SecretsSettings = _settings(SecretsSettings, config, self.name)
        self.enabled = settings.enabled
        self.patterns = [re.compile(p) for p in settings.patterns]
        rules = {"api_key": self._api_keys, "private_key": self._key_blocks,
                 "card": self._cards, "pattern": self._patterns}
        self.rules = [(k, rule) for k, rule in rules.items() if k not in settings.off]

    # -- finding ---------------------------------------------------------------------------

    def _api_keys(self, text: str, final: bool) -> list[tuple[int, int]]:
        return [m.span() for m in _API_KEYS.finditer(text)]

    def _key_blocks(self, text: str, final: bool) -> list[tuple[int, int]]:
        spans = [m.span() for m in _KEY_BLOCK.finditer(text)]
        rest = spans[-1][1] if spans else 0
        if final and (open_block := _KEY_OPEN.search(text, rest)):
            spans.append(open_block.span())
        return spans

    def _cards(self, text: str, final: bool) -> list[tuple[int, int]]:
        spans = []
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and luhn(digits):
                spans.append(m.span())
        return spans

    def _patterns(self, text: str, final: bool) -> list[tuple[int, int]]:
        return [m.span() for p in self.patterns for m in p.finditer(text) if m.end() > m.start()]

    def find(self, text: str, final: bool = True) -> list[tuple[int, int, str]]:
        """Every secret in ``text``, earliest first, overlaps merged into the first."""
        found = sorted((a, b, kind) for kind, rule in self.rules for a, b in rule(text, final))
        merged: list[tuple[int, int, str]] = []
        for a, b, kind in found:
            if merged and a < merged[-1][1]:
                last = merged[-1]
                merged[-1] = (last[0], max(last[1], b), last[2])
            else:
                merged.append((a, b, kind))
        return merged

    def redact(self, text: str, found: list[tuple[int, int, str]]) -> str:
        out, at = [], 0
        for a, b, kind in found:
            out += [text[at:a], f"[redacted:{kind}]"]
            at = b
        return "".join([*out, text[at:]])

    # -- the guard -------------------------------------------------------------------------

    def check(self, turn: Turn) -> Verdict | None:
        found = self.find(turn.text)
        if not found:
            return None
        kinds = tuple(sorted({kind for _, _, kind in found}))
        return Verdict.rewrite(self.redact(turn.text, found),
                               f"{_count(len(found), 'secret')} redacted ({', '.join(kinds)}) "
                               "before the text was stored or given to a model", kinds)

    def filter(self, turn: Turn, pending: str, final: bool) -> Filtered:
        cut = len(pending) if final else self._safe_cut(pending)
        found = self.find(pending, final)
        for a, b, _ in found:
            if a < cut < b:  # a secret across the cut waits whole
                cut = a
        found = [f for f in found if f[1] <= cut]
        head = pending[:cut]
        if not found:
            return Filtered(head, held=len(pending) - cut)
        kinds = tuple(sorted({kind for _, _, kind in found}))
        return Filtered(self.redact(head, found), held=len(pending) - cut,
                        reason=f"{_count(len(found), 'secret')} in the reply redacted "
                               f"({', '.join(kinds)})", kinds=kinds)

    def _safe_cut(self, pending: str) -> int:
        """Where the text that cannot yet be part of a secret ends."""
        cut = len(pending)
        run = _RUN.search(pending)
        if run is not None and run.group():
            # A key begins at the run's start or after + / = . (never after a word character
            # or a dash), with one of the known prefixes.
            starts = [run.start()] + [run.start() + i + 1 for i, c in enumerate(run.group())
                                      if c in "+/=."]
            cut = next((p for p in starts if _may_start_key(pending[p:])), cut)
        if (digits := _DIGITS.search(pending)) is not None:
            cut = min(cut, digits.start())
        marker = next((k for k in range(len(_MARKER), 0, -1)
                       if pending.endswith(_MARKER[:k])), 0)
        cut = min(cut, len(pending) - marker)
        opened = [m.start() for m in _KEY_START.finditer(pending)]
        if opened and not _KEY_BLOCK.search(pending, opened[-1]):
            cut = min(cut, opened[-1])
        if self.patterns:
            cut = min(cut, pending.rfind("\n") + 1)
        return max(cut, len(pending) - MAX_HOLD)


class TopicsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    enabled: bool = True
    blocked: list[str] = []
    reason: str = Field("This assistant is set up not to discuss that topic.", min_length=1)


class Topics(Guard):
    name = "topics"

    def __init__(self) -> None:
        self.pattern: re.Pattern[str] | None = None
        self.reason = ""
        self.longest = 0
        self.configure({})

    def configure(self, config: dict[str, Any]) -> None:
        settings: TopicsSettings = _settings(TopicsSettings, config, self.name)
        words = [w.strip() for w in settings.blocked if w.strip()]
        self.enabled = settings.enabled and bool(words)
        self.reason = settings.reason
        self.longest = max((len(w) for w in words), default=0)
        alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
        self.pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.I) if words else None

    def _hit(self, text: str, final: bool) -> re.Match[str] | None:
        if self.pattern is None:
            return None
        for m in self.pattern.finditer(text):
            if final or m.end() < len(text):  # a word at the very end may go on
                return m
        return None

    def check(self, turn: Turn) -> Verdict | None:
        hit = self._hit(turn.text, True)
        if hit is None:
            return None
        return Verdict.block(self.reason, (" ".join(hit.group().lower().split()),))

    def filter(self, turn: Turn, pending: str, final: bool) -> Filtered:
        hit = self._hit(pending, final)
        if hit is not None:
            return Filtered(pending[:hit.start()], stop=self.reason,
                            kinds=(" ".join(hit.group().lower().split()),))
        if final:
            return Filtered(pending)
        # Held: enough for a phrase that starts in it to be seen whole, from a word's start.
        cut = max(len(pending) - 2 * self.longest, 0)
        while cut > 0 and not pending[cut - 1].isspace():
            cut -= 1
        return Filtered(pending[:cut], held=len(pending) - cut)


def _may_start_key(text: str) -> bool:
    return any(p.startswith(text) or text.startswith(p) for p in _PREFIXES)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@hookimpl
def register_guards(register: Callable[[Guard], None]) -> None:
    register(Secrets())
    register(Topics())
