"""The translate skill (first version; issue 6 brings spaCy, a packaged detector, glossaries).

The target language comes from the request ("to French", "翻译成英文", "auf Deutsch",
``/translate de …``), else ``[skills.translate] target`` (default ``en``; ``zh`` when the
text is already English). Long text is translated in sentence batches, in order, with progress.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

from assistant import (
    ChatMessage,
    DeltaEvent,
    Event,
    GenerationParams,
    Skill,
    SkillContext,
    Turn,
    hookimpl,
)

LANGUAGES = {
    "en": ("English", "english", "anglais", "englisch", "inglés", "ingles", "英文", "英语", "英語"),
    "zh": ("Chinese", "chinese", "chinois", "chinesisch", "chino", "中文", "汉语", "中国語"),
    "fr": ("French", "french", "français", "francais", "französisch", "francés", "法语",
           "フランス語"),
    "de": ("German", "german", "allemand", "deutsch", "alemán", "aleman", "德语", "ドイツ語"),
    "es": ("Spanish", "spanish", "espagnol", "spanisch", "español", "espanol", "西班牙语",
           "スペイン語"),
    "ja": ("Japanese", "japanese", "japonais", "japanisch", "japonés", "日语", "日文", "日本語"),
    "it": ("Italian", "italian", "italien", "italienisch", "italiano", "意大利语", "イタリア語"),
    "pt": ("Portuguese", "portuguese", "portugais", "portugiesisch", "portugués", "葡萄牙语"),
    "ko": ("Korean", "korean", "coréen", "koreanisch", "coreano", "韩语", "韓国語"),
    "ru": ("Russian", "russian", "russe", "russisch", "ruso", "俄语", "ロシア語"),
}
_ALIASES = {alias: code for code, names in LANGUAGES.items() for alias in names[1:]}
_CODE_PREFIX = re.compile(r"^([a-z]{2})\s+(.+)$", re.S)
_TARGET_WORDS = re.compile(
    r"(?:\b(?:to|into|in|en|vers|auf|ins|nach|al|a)\s+|成|为|為)\s*(\w+)", re.I
)
BATCH_CHARS = 1200


def parse_request(text: str) -> tuple[str | None, str]:
    """(target language code or None, the text to translate)."""
    match = _CODE_PREFIX.match(text.strip())
    if match and match.group(1) in LANGUAGES:
        return match.group(1), match.group(2)
    target = None
    lowered = text.lower()
    for alias in sorted(_ALIASES, key=len, reverse=True):
        if alias in lowered and (not alias.isascii() or _TARGET_WORDS.search(lowered)):
            target = _ALIASES[alias]
            break
    body = text
    for sep in (":", "：", "\n"):
        if sep in text:
            head, _, tail = text.partition(sep)
            if tail.strip() and len(head) < 80:
                body = tail.strip()
                break
    quoted = re.search(r"[\"“「『«](.+?)[\"”」』»]", body, re.S)
    if body == text and quoted:
        body = quoted.group(1)
    return target, body


def batches(sentences: list[str], limit: int = BATCH_CHARS) -> list[str]:
    out: list[str] = []
    for sentence in sentences:
        if out and len(out[-1]) + len(sentence) < limit:
            out[-1] += " " + sentence
        else:
            out.append(sentence)
    return out


class Translate(Skill):
    name = "translate"
    description = "Translate text between languages."
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
        target, body = parse_request(str(turn.args.get("text") or turn.text))
        target = str(turn.args.get("target") or target or "")
        source = ctx.detect_language(body)
        if not target:
            target = str(ctx.config.get("target", "en"))
            if target == source:
                target = str(ctx.config.get("alternate_target", "zh"))
        target_name = LANGUAGES.get(target, (target,))[0]
        chunks = batches(ctx.sentences(body, source)) or [body]
        params = GenerationParams(temperature=0.2)
        for i, chunk in enumerate(chunks):
            if len(chunks) > 1:
                ctx.progress(i, len(chunks), f"translating part {i + 1} of {len(chunks)}")
            messages = [
                ChatMessage("system", "You are a translator. Output only the translation, "
                            "keeping formatting, code, URLs and numbers unchanged."),
                ChatMessage("user", f"Translate into {target_name}:\n\n{chunk}"),
            ]
            if i:
                yield DeltaEvent(" ")
            async for piece in ctx.generate(messages, params):
                yield DeltaEvent(piece)
        if len(chunks) > 1:
            ctx.progress(len(chunks), len(chunks), "done")


@hookimpl
def register_skills(register: Callable[[Skill], None]) -> None:
    register(Translate())
