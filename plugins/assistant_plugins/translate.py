"""The translate skill: any pair the model handles, Markdown and code kept, streamed in order.

The target comes from the request ("to French", "翻译成英文", "auf Deutsch", "en español",
``/translate de …``), else ``[skills.translate] default_target`` (``en``; ``alternate_target``,
``zh``, when the text is already in it). The source is detected offline. Text is split into
Markdown parts (code blocks, prefixes and blank lines never reach the model); each prose unit is
cut into sentences with spaCy and translated in batches sized to the context, in order, as a
stream. Inline code, URLs and links travel as placeholders and are restored and checked, as are
numbers and glossary terms. With no text in the request it translates the previous reply.

Config ``[skills.translate]``: ``default_target``, ``alternate_target``, ``context_tokens``
(default 2048), ``glossary = {term = "translation"}``, ``model``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import NamedTuple

from assistant import (
    ChatMessage,
    DeltaEvent,
    Event,
    GenerationParams,
    Notice,
    Skill,
    SkillContext,
    Turn,
    hookimpl,
)
from assistant_plugins.budget import batches as budget_batches
from assistant_plugins.budget import context_tokens, estimate_tokens
from assistant_plugins.markdown import PLACEHOLDER, Part, missing, numbers, restore, split_markdown

# code: (English name, native name, aliases in several languages)
LANGUAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "en": ("English", "English", ("english", "anglais", "englisch", "englische", "inglés",
                                  "ingles", "inglese", "英文", "英语", "英語", "英")),
    "zh": ("Chinese", "中文", ("chinese", "mandarin", "chinois", "chinesisch", "chinesische",
                              "chino", "cinese", "中文", "汉语", "漢語", "中国語", "华语", "中")),
    "fr": ("French", "français", ("french", "français", "francais", "französisch",
                                  "französische", "francés", "frances", "francese", "法语",
                                  "法文", "フランス語", "法")),
    "de": ("German", "Deutsch", ("german", "allemand", "deutsch", "deutsche", "alemán",
                                 "aleman", "tedesco", "德语", "德文", "ドイツ語", "德")),
    "es": ("Spanish", "español", ("spanish", "espagnol", "spanisch", "spanische", "español",
                                  "espanol", "castellano", "spagnolo", "西班牙语", "西班牙文",
                                  "スペイン語", "西")),
    "ja": ("Japanese", "日本語", ("japanese", "japonais", "japanisch", "japanische", "japonés",
                                  "japones", "giapponese", "日语", "日文", "日本語", "日")),
    "it": ("Italian", "italiano", ("italian", "italien", "italienisch", "italienische",
                                   "italiano", "意大利语", "イタリア語")),
    "pt": ("Portuguese", "português", ("portuguese", "portugais", "portugiesisch",
                                       "portugiesische", "portugués", "portoghese",
                                       "葡萄牙语", "ポルトガル語")),
    "ko": ("Korean", "한국어", ("korean", "coréen", "koreanisch", "koreanische", "coreano",
                               "韩语", "韓国語", "韩文", "韩")),
    "ru": ("Russian", "русский", ("russian", "russe", "russisch", "russische", "ruso", "russo",
                                  "俄语", "ロシア語", "俄")),
    "nl": ("Dutch", "Nederlands", ("dutch", "néerlandais", "niederländisch", "neerlandés",
                                   "荷兰语")),
    "ar": ("Arabic", "العربية", ("arabic", "arabe", "arabisch", "árabe", "阿拉伯语")),
    "pl": ("Polish", "polski", ("polish", "polonais", "polnisch", "polaco", "波兰语")),
    "tr": ("Turkish", "Türkçe", ("turkish", "turc", "türkisch", "turco", "土耳其语")),
    "sv": ("Swedish", "svenska", ("swedish", "suédois", "schwedisch", "sueco", "瑞典语")),
    "uk": ("Ukrainian", "українська", ("ukrainian", "ukrainien", "ukrainisch", "ucraniano")),
    "vi": ("Vietnamese", "Tiếng Việt", ("vietnamese", "vietnamien", "vietnamesisch", "越南语")),
    "hi": ("Hindi", "हिन्दी", ("hindi",)),
}
_ALIASES = {alias: code for code, (_, _, names) in LANGUAGES.items() for alias in names}
_ALIASES.update({code: code for code in LANGUAGES})
_LATIN_ALIASES = sorted((a for a in _ALIASES if not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", a)),
                        key=len, reverse=True)
# "to French", "into French", "in French", "en français", "vers le français", "auf Deutsch",
# "ins Deutsche", "nach Englisch", "al inglés", "a español", "para inglés", "in inglese".
_CUE = r"(?:to|into|in|en|vers(?:\s+l[ea'])?|auf|ins|nach|al|a|para|au|in\s+die)"
_TARGET = re.compile(rf"(?<!\w){_CUE}\s+(\w+)", re.I)
# "翻译成英文", "译为法语", "翻成", "用日语", "英語に", "中译英".
_CJK_TARGET = re.compile(
    r"(?:译成|翻成|译为|翻译为|翻譯成|转成|换成|用|成)\s*"
    r"([\u4e00-\u9fff\u30a0-\u30ffA-Za-z]+?)(?:[：:，,。\s]|$|吧|的|怎么|说|翻译|一下)"
    r"|([\u4e00-\u9fff\u30a0-\u30ff]+?)(?:に翻訳|に訳|で何|で「)")
_PAIR = re.compile(r"([中英日法德韩俄西])译([中英日法德韩俄西])")
_CODE_PREFIX = re.compile(r"^([a-z]{2,3}(?:-[A-Za-z]{2,4})?)(?:\s+|:\s*)(.+)$", re.S)
_COMMAND_WORDS = re.compile(
    r"\b(?:translat\w*|tradu\w*|übersetz\w*|render|convert|say|sagt?|dit|dice)\b|翻译|翻譯|译|訳|翻訳",
    re.I)
# A "to X" that names no language we know, in a translation request: tell the user.
_UNKNOWN_TARGET = re.compile(
    r"(?:translate|traduis|traduce|übersetze)\b[^:\n]*?\b(?:to|into|en|in|ins|al|auf)\s+"
    r"(?:the\s+)?([A-Za-zÀ-ÿ]+)", re.I)
_SHORT_WORDS = {"my", "me", "we", "us", "he", "an", "at", "on", "of", "so", "no", "to", "do",
                "go", "if", "or", "up", "hi", "ok", "is", "be", "by", "as", "am", "oh"}
BATCH_SHARE = 0.3  # of the context for the source text; the translation gets about as much


class UnknownLanguage(ValueError):
    """The request names a target language the skill does not know."""


def language_code(name: str) -> str | None:
    """The ISO 639-1 code for a language name or code in any listed language, else None."""
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    for alias in _LATIN_ALIASES:  # "Deutsche", "Englischen", "françaises"
        if len(alias) > 3 and key.startswith(alias):
            return _ALIASES[alias]
    return None


def language_name(code: str) -> str:
    """"French (français)": the English name and the native one, for prompts."""
    english, native, _ = LANGUAGES.get(code, (code, code, ()))
    return english if native == english else f"{english} ({native})"


class Request(NamedTuple):
    target: str | None
    body: str


def parse_request(text: str, command: bool = False) -> Request:
    """The target language named in ``text`` (or None) and the text to translate.

    ``command``: the user typed ``/translate …``, so a leading code (``de …``) is the target.
    Raises :class:`UnknownLanguage` when the request clearly names a target we do not know.
    """
    stripped = text.strip()
    match = _CODE_PREFIX.match(stripped) if command else None
    if match:
        code = match.group(1).lower().split("-")[0]
        known = code if code in LANGUAGES else language_code(code)
        if known:
            return Request(known, match.group(2).strip())
        if len(code) == 2 and code not in _SHORT_WORDS:
            raise UnknownLanguage(match.group(1))
    head, body = _split_instruction(stripped)
    target = _find_target(head)
    if target is None and body != stripped:
        target = _find_target(stripped[: len(stripped) - len(body)])
    if target is None and (head == stripped or _COMMAND_WORDS.search(head)):
        unknown = _UNKNOWN_TARGET.search(head)
        if unknown and language_code(unknown.group(1)) is None and unknown.group(1).lower() not in {
                "me", "this", "that", "it", "these", "those", "my", "our", "le", "la", "les"}:
            raise UnknownLanguage(unknown.group(1))
    return Request(target, body)


def _split_instruction(text: str) -> tuple[str, str]:
    """(instruction, text to translate): after a colon or the first line, else a quote."""
    for sep in (":", "：", "\n"):
        head, found, tail = text.partition(sep)
        if found and tail.strip() and len(head) < 100 and "http" not in head[-6:]:
            return head, tail.strip()
    quoted = re.search(r"[\"“„「『«'‘]\s*(.+?)\s*[\"”“」』»'’]", text, re.S)
    if quoted and (_COMMAND_WORDS.search(text) or re.search(r"[?？]\s*$", text)):
        return text, quoted.group(1)
    if _COMMAND_WORDS.match(text.strip()):
        # "Translate to French the weather is nice": whatever follows the language name.
        target = _TARGET.search(text)
        if target and language_code(target.group(1)) and text[target.end():].strip():
            return text[: target.end()], text[target.end():].strip(" ,")
    return text, text


def _find_target(head: str) -> str | None:
    pair = _PAIR.search(head)
    if pair:
        return _ALIASES.get(pair.group(2))
    for match in _CJK_TARGET.finditer(head):
        word = match.group(1) or match.group(2)
        for end in range(len(word), 0, -1):  # "英文吧" → "英文"
            code = language_code(word[:end])
            if code:
                return code
    for match in _TARGET.finditer(head):
        code = language_code(match.group(1))
        if code:
            return code
    return None


# Two short sentences, in each language we have them in, for few-shot prompts. They carry a
# placeholder and a number so the model sees both come through unchanged.
SHOTS: dict[str, tuple[str, str]] = {
    "en": ("Where is the train station?", "Run ⟦1⟧ before 10:30, it takes 5 minutes."),
    "zh": ("火车站在哪里？", "在10:30之前运行⟦1⟧，需要5分钟。"),
    "fr": ("Où est la gare ?", "Lancez ⟦1⟧ avant 10:30, cela prend 5 minutes."),
    "de": ("Wo ist der Bahnhof?", "Führe ⟦1⟧ vor 10:30 aus, es dauert 5 Minuten."),
    "es": ("¿Dónde está la estación de tren?", "Ejecuta ⟦1⟧ antes de las 10:30, tarda 5 minutos."),
    "ja": ("駅はどこですか？", "10:30までに⟦1⟧を実行してください。5分かかります。"),
    "it": ("Dov'è la stazione?", "Esegui ⟦1⟧ prima delle 10:30, ci vogliono 5 minuti."),
    "pt": ("Onde fica a estação de trem?", "Execute ⟦1⟧ antes das 10:30, leva 5 minutos."),
    "ru": ("Где вокзал?", "Запустите ⟦1⟧ до 10:30, это займёт 5 минут."),
    "ko": ("기차역이 어디에 있어요?", "10:30 전에 ⟦1⟧을 실행하세요. 5분 걸립니다."),
}


def build_messages(
    text: str, source: str, target: str, glossary: dict[str, str] | None = None
) -> list[ChatMessage]:
    """A few-shot prompt: instructions naming both languages, two examples, then ``text``."""
    src = language_name(source) if source in LANGUAGES else "the source language"
    rules = [
        f"You translate {src} into {language_name(target)}.",
        "Reply with the translation only: no notes, no quotes, no explanations.",
        "Keep every placeholder such as ⟦1⟧, every number and all punctuation style as in the "
        "original.",
    ]
    used = {k: v for k, v in (glossary or {}).items() if k.lower() in text.lower()}
    if used:
        terms = "; ".join(f"{k} → {v}" for k, v in used.items())
        rules.append(f"Always translate these terms exactly so: {terms}.")
    messages = [ChatMessage("system", " ".join(rules))]
    ask = f"Translate into {language_name(target)}:\n\n"
    shot_source = source if source in SHOTS and source != target else "en"
    if target in SHOTS and shot_source != target:
        for a, b in zip(SHOTS[shot_source], SHOTS[target], strict=True):
            messages += [ChatMessage("user", ask + a), ChatMessage("assistant", b)]
    messages.append(ChatMessage("user", ask + text))
    return messages


_PREAMBLE = re.compile(
    r"^\s*(?:(?:here(?:'s| is) the |the )?translation(?: \w+)?(?: in(?:to)? \w+)?\s*[:：]"
    r"|translated(?: text)?\s*[:：]|译文\s*[:：]|翻译\s*[:：]|traduction\s*[:：]"
    r"|übersetzung\s*[:：]|traducción\s*[:：])\s*", re.I)


class Cleaner:
    """Streams a batch's output: drops a "Translation:" preamble, stops at a second paragraph
    the source did not have, and holds back half-received placeholders until restorable."""

    def __init__(self, protected: list[str], single_line: bool) -> None:
        self.protected = protected
        self.single_line = single_line
        self.started = False
        self.pending = ""
        self.done = False
        self.raw = ""

    def feed(self, piece: str) -> str:
        if self.done:
            return ""
        self.pending += piece
        self.raw += piece
        if not self.started:
            if len(self.pending) < 24 and "\n" not in self.pending:
                return ""
            self.pending = _PREAMBLE.sub("", self.pending, count=1).lstrip()
            self.started = True
        if self.single_line and "\n" in self.pending.strip("\n") and self.pending.strip():
            self.pending = self.pending.strip("\n").split("\n", 1)[0]
            self.done = True
            return self._emit(final=True)
        return self._emit(final=False)

    def finish(self) -> str:
        if not self.started:
            self.pending = _PREAMBLE.sub("", self.pending, count=1).lstrip()
            self.started = True
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        text = self.pending
        hold = "" if final else text[text.rfind("⟦"):] if "⟦" in text[-12:] and "⟧" not in \
            text[text.rfind("⟦"):] else ""
        out = text[: len(text) - len(hold)]
        self.pending = hold
        if final:
            out = out.rstrip()
        return restore(out, self.protected)


class Translate(Skill):
    name = "translate"
    description = "Translate text between languages."
    own_loop = False  # awaits everything: no thread needed for the daemon's own skills
    uses_history = False  # it reads the last message at most: nothing to compact
    examples = (
        "Translate this into French: good morning",
        "How do you say 'thank you' in Japanese?",
        "Translate the following paragraph to English",
        "Can you translate this email into Spanish for me?",
        "What does 'Guten Appetit' mean in English?",
        "Please translate to German: the meeting is postponed",
        "Translate this sentence into Chinese",
        "Render this text in Italian",
        "把这句话翻译成英文",
        "请帮我翻译这段文字",
        "翻译成日语：我明天去东京",
        "这个词用法语怎么说？",
        "英文翻译一下：你好世界",
        "帮我把这封邮件译成德语",
        "Traduis cette phrase en anglais",
        "Peux-tu traduire ce texte en allemand ?",
        "Comment dit-on « merci » en japonais ?",
        "Traduction en espagnol s'il te plaît : je suis fatigué",
        "Übersetze diesen Satz ins Englische",
        "Kannst du das bitte auf Französisch übersetzen?",
        "Was heißt „Schmetterling“ auf Spanisch?",
        "Übersetzung ins Japanische: Guten Morgen",
        "Traduce esta frase al inglés",
        "¿Puedes traducir este texto al francés?",
        "¿Cómo se dice 'gracias' en alemán?",
        "Tradúceme esto al japonés, por favor",
        "この文を英語に翻訳して",
        "これを中国語に訳してください",
        "「ありがとう」はフランス語で何と言いますか？",
        "次の文章をドイツ語に翻訳してください",
        "Translate into Korean: happy new year",
        "What's the Portuguese for 'good night'?",
        "I need an English version of this German letter",
        "Convert this sentence to Russian",
        "Translate the menu below to English",
        "What is 'bonjour' in English?",
        "How do I say 'where is the hotel' in Spanish?",
        "Translate word for word: Ich liebe dich",
        "English to Chinese: see you soon",
        "Can you put this paragraph into Japanese?",
        "请翻译成韩语：生日快乐",
        "把这段英文译成中文",
        "中译英：我很高兴认识你",
        "这句日语是什么意思？翻译一下",
        "帮我翻译一下这个单词",
        "德语里“谢谢”怎么说？",
        "Traduis ce mail en anglais, s'il te plaît",
        "Traduction française de « good night » ?",
        "Que veut dire « Gemütlichkeit » en français ?",
        "Peux-tu traduire ces phrases en chinois ?",
        "Traduis en russe : bonjour",
        "Übersetze ins Englische: Wie spät ist es?",
        "Was heißt „Guten Abend“ auf Chinesisch?",
        "Übersetzung ins Französische bitte",
        "Bitte übersetze diese Nachricht ins Spanische",
        "Wie übersetzt man „Fernweh“?",
        "Traduce esta frase al japonés",
        "¿Cómo se traduce 'sobremesa' al inglés?",
        "Traducción al alemán: buenos días",
        "Traduce este correo al chino",
        "¿Qué quiere decir 'merci' en español?",
        "日本語に翻訳して：Thank you very much",
        "この言葉を英語で何と言いますか？",
        "これをスペイン語に訳して",
        "英訳してください：よろしくお願いします",
        "中国語で「こんにちは」は何と言う？",
    )

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        raw = str(turn.args.get("text") or turn.text)
        try:
            request = parse_request(raw, command=turn.raw_text.lstrip().startswith(("/", "@")))
        except UnknownLanguage as exc:
            yield Notice(f"I don't know the language '{exc}'. Name it in English or give its "
                         f"ISO code, e.g. 'to French' or '/translate fr …'. Known: "
                         f"{', '.join(sorted(LANGUAGES))}.", "warning")
            return
        body = request.body.strip()
        bare_request = (body == raw.strip() and bool(_COMMAND_WORDS.search(raw))
                        and len(body) < 60)
        if (not body or bare_request) and ctx.history:
            previous = next((m.content for m in reversed(ctx.history)
                             if m.role == "assistant" and m.content.strip()), "")
            if previous:
                body = previous
        if not body:
            yield Notice("Nothing to translate: put the text after the request, e.g. "
                         "'Translate to French: good morning'.", "warning")
            return
        source = str(turn.args.get("source") or ctx.detect_language(body))
        explicit = turn.args.get("target") or request.target
        target = str(explicit or ctx.config.get("default_target")
                     or ctx.config.get("target") or "en")
        if target not in LANGUAGES and language_code(target) is None:
            yield Notice(f"I don't know the target language '{target}'. Known: "
                         f"{', '.join(sorted(LANGUAGES))}.", "warning")
            return
        target = target if target in LANGUAGES else str(language_code(target))
        if not explicit and target == source:
            target = str(ctx.config.get("alternate_target", "zh"))
        glossary = {str(k): str(v) for k, v in dict(ctx.config.get("glossary") or {}).items()}
        async for event in self.translate(body, source, target, ctx, glossary):
            yield event

    async def translate(
        self, text: str, source: str, target: str, ctx: SkillContext,
        glossary: dict[str, str] | None = None,
    ) -> AsyncIterator[Event]:
        """Translate ``text`` part by part, streaming; notices for anything that got lost."""
        parts = split_markdown(text)
        budget = int(context_tokens(ctx.config) * BATCH_SHARE)
        plan = [(part, self._batches(part, source, ctx, budget)) for part in parts]
        total = sum(len(b) for _, b in plan)
        done = 0
        lost: list[str] = []
        joiner = "" if target in {"zh", "ja"} else " "
        for index, (part, chunks) in enumerate(plan):
            if index:
                yield DeltaEvent("\n")
            if not part.translate:
                if part.text:
                    yield DeltaEvent(part.text)
                continue
            if part.prefix:
                yield DeltaEvent(part.prefix)
            output: list[str] = []
            for n, chunk in enumerate(chunks):
                if total > 1:
                    ctx.progress(done, total, f"translating part {done + 1} of {total}")
                if n:
                    yield DeltaEvent(joiner)
                    output.append(joiner)
                cleaner = Cleaner(part.protected, single_line=True)
                params = GenerationParams(temperature=0.0,
                                          max_tokens=2 * estimate_tokens(chunk) + 32)
                async for piece in ctx.generate(build_messages(chunk, source, target, glossary),
                                                params):
                    out = cleaner.feed(piece)
                    if out:
                        output.append(out)
                        yield DeltaEvent(out)
                    if cleaner.done:
                        break
                tail = cleaner.finish()
                if tail:
                    output.append(tail)
                    yield DeltaEvent(tail)
                done += 1
            result = "".join(output)
            # A token the model dropped is appended rather than lost.
            dropped = [t for t in missing(result, part.protected)
                       if t not in "".join(ch for ch in chunks if not PLACEHOLDER.search(ch))]
            if dropped:
                yield DeltaEvent(" " + " ".join(dropped))
                lost += dropped
            lost += [n for n in numbers(part.text) if n not in result]
            lost += [f"{k} → {v}" for k, v in (glossary or {}).items()
                     if k.lower() in part.text.lower() and v not in result]
        if total > 1:
            ctx.progress(total, total, "done")
        if lost:
            yield Notice("Check the translation: these did not come through as given: "
                         + ", ".join(dict.fromkeys(lost)), "warning")

    @staticmethod
    def _batches(part: Part, source: str, ctx: SkillContext, budget: int) -> list[str]:
        if not part.translate:
            return []
        if estimate_tokens(part.text) <= budget:
            return [part.text]
        return budget_batches(ctx.sentences(part.text, source), budget)


def batches(sentences: Sequence[str], limit: int = 1200) -> list[str]:
    """Sentences joined into batches of about ``limit`` characters (kept for summarize)."""
    return budget_batches(sentences, max(64, limit // 2))


@hookimpl
def register_skills(register: Callable[[Skill], None]) -> None:
    register(Translate())
