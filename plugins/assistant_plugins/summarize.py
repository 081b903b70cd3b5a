"""The summarize skill (first version; issue 6 adds files, documents, styles, extractive mode).

Summarizes the text given with the request, or the conversation so far when the request has no
text of its own ("summarize our chat"). Long input is summarized map-reduce over sentence
chunks, with progress events. Config ``[skills.summarize]``: ``chunk_chars`` (default 3000).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

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
from assistant_plugins.translate import batches

INSTRUCTION = "Summarize the following text concisely, in the language of the text."


def body_of(text: str) -> str:
    """The text after an instruction line or colon; '' when the request is only an instruction."""
    for sep in ("\n", ":", "："):
        head, found, tail = text.partition(sep)
        if found and tail.strip() and len(head) < 120:
            return tail.strip()
    return text if len(text) > 200 else ""


class Summarize(Skill):
    name = "summarize"
    description = "Summarize a text or the conversation."
    examples = (
        "Summarize this article for me",
        "Can you give me a short summary of the following text?",
        "TL;DR of this document please",
        "Sum up our conversation so far",
        "Give me the key points of this report in three bullets",
        "Condense this paragraph into one sentence",
        "What are the main takeaways from this text?",
        "请总结一下这篇文章",
        "帮我概括这段内容的要点",
        "用一句话总结下面的文字",
        "把我们的对话总结一下",
        "给这份报告写个摘要",
        "Résume cet article",
        "Fais-moi un résumé de ce texte en trois points",
        "Peux-tu résumer notre conversation ?",
        "Quels sont les points clés de ce document ?",
        "Fasse diesen Text zusammen",
        "Gib mir eine kurze Zusammenfassung des Artikels",
        "Was sind die wichtigsten Punkte dieses Berichts?",
        "Fass unser Gespräch kurz zusammen",
        "Resume este artículo, por favor",
        "Hazme un resumen de este texto",
        "¿Cuáles son los puntos principales de este informe?",
        "Resume nuestra conversación en pocas líneas",
        "この記事を要約してください",
        "次の文章を三行でまとめて",
        "この報告書の要点を教えて",
        "今までの会話を要約して",
        "Recap the main points of this email",
        "Give me the gist of the following story",
        "Shorten this text to a few sentences",
        "Summarize what we talked about",
        "Write an abstract for this paper",
        "Boil this article down to one line",
        "Brief overview of this report, please",
        "Make this long message shorter",
        "An executive summary of this memo",
        "Summary: (text follows)",
        "简要概括这篇新闻",
        "总结一下我们刚才的讨论",
        "帮我把这篇文章缩写成一段话",
        "这段话的大意是什么？",
        "写一段这本书的内容提要",
        "Donne-moi un résumé de cet e-mail",
        "Synthétise ce document",
        "Récapitule notre échange",
        "Résume en une phrase ce paragraphe",
        "Condense ce texte",
        "Zusammenfassung dieses Artikels bitte",
        "Kürze den folgenden Text",
        "Fass die Kernaussagen zusammen",
        "Gib mir einen kurzen Überblick über diesen Bericht",
        "Was ist das Wesentliche an diesem Text?",
        "Haz un resumen de esta conversación",
        "Sintetiza este informe",
        "Dame un resumen corto del siguiente texto",
        "Resume los puntos clave del correo",
        "¿De qué trata este artículo? Resúmelo",
        "このメールを要約して",
        "この文章を短くまとめて",
        "議事録の要点をまとめてください",
        "この本のあらすじを簡単に",
        "話した内容をまとめて",
        "Recap our chat",
        "这篇文章讲了什么？简单概括",
    )

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        text = str(turn.args.get("text") or body_of(turn.text))
        if not text:
            if not ctx.history:
                yield Notice("Nothing to summarize: paste a text after the request, or chat "
                             "first and ask to summarize the conversation.", "warning")
                return
            text = "\n".join(f"{m.role}: {m.content}" for m in ctx.history)
        limit = int(ctx.config.get("chunk_chars", 3000))
        chunks = batches(ctx.sentences(text), limit) or [text]
        params = GenerationParams(temperature=0.3)
        if len(chunks) > 1:
            partial = []
            for i, chunk in enumerate(chunks):
                ctx.progress(i, len(chunks), f"summarizing part {i + 1} of {len(chunks)}")
                pieces = [p async for p in ctx.generate(self._prompt(chunk), params)]
                partial.append("".join(pieces).strip())
            ctx.progress(len(chunks), len(chunks), "combining")
            text = "\n".join(partial)
        async for piece in ctx.generate(self._prompt(text), params):
            yield DeltaEvent(piece)

    @staticmethod
    def _prompt(text: str) -> list[ChatMessage]:
        return [ChatMessage("system", INSTRUCTION), ChatMessage("user", text)]


@hookimpl
def register_skills(register: Callable[[Skill], None]) -> None:
    register(Summarize())
