"""Bullet summaries that obey the request: exactly the count asked for, distinct, in the
language asked for, whatever a small model's habits.

The model is asked first. A reply in another language is asked again naming the language, a
reply short of points (or looping) again with llama.cpp's penalties. Points still missing are
the model's own points in another language, else the text's own most central sentences
(:func:`~assistant_plugins.salience.central`; headings left out); points still in another
language are translated, and one the model cannot translate gives way to another of its points.
"""

from __future__ import annotations

from assistant import ChatMessage, GenerationParams, Notice, SkillContext
from assistant_plugins.repetition import generate_text, penalized
from assistant_plugins.salience import central
from assistant_plugins.shape import bullet_items
from assistant_plugins.translate import build_messages, language_name

# Languages the detector tells apart reliably on a few short lines.
KNOWN = {"en", "zh", "fr", "de", "es", "ja", "it", "pt", "ko", "ru"}


def in_language(items: list[str], target: str, ctx: SkillContext) -> bool:
    """Whether ``items`` are written in ``target`` (true when either cannot be told)."""
    if target not in KNOWN or not items:
        return True
    return ctx.detect_language(" ".join(items)) in {target, "und", ""}


async def bullet_summary(
    prompt: list[ChatMessage], params: GenerationParams, count: int | None, target: str,
    text: str, lang: str, ctx: SkillContext,
) -> tuple[list[str], list[Notice]]:
    """``count`` bullets (3 when none is named, up to 5 if the model gives them) summarizing
    ``text`` (in ``lang``) in ``target``, and notices on how they were made."""
    want = count or 3
    items: list[str] = []
    foreign: list[str] = []  # the model's points in another language: translated if needed
    notices: list[Notice] = []
    asked_language = False
    for attempt in range(3):
        if attempt:
            ctx.progress(attempt, 3, "asking the model again for the points requested")
        reply = await generate_text(ctx, prompt, params)
        found = bullet_items(reply, lambda t: ctx.sentences(t, target))
        if found and not in_language(found, target, ctx):
            foreign += [i for i in found if not in_language([i], target, ctx)]
            if not asked_language:
                asked_language = True
                # Said in the system message: the user's may already fill the context.
                prompt = [ChatMessage("system", f"{prompt[0].content} Write every bullet in "
                                                f"{language_name(target)}, whatever the "
                                                "language of the text."), *prompt[1:]]
                continue
            found = [i for i in found if in_language([i], target, ctx)]
            if not found:
                break  # asked twice: penalties will not change the language
        keys = {_key(i) for i in items}
        items += [i for i in found if _key(i) not in keys]
        if len(items) >= want:
            break
        params = penalized(params)
    if len(items) < want and foreign:  # the model's own points beat the text's sentences
        keys = {_key(i) for i in items}
        items += [i for i in dict.fromkeys(foreign) if _key(i) not in keys][:want - len(items)]
        notices.append(Notice("The model wrote its points in another language: they are "
                              "translated.", "info"))
    if len(items) < want:
        sentences = [s for s in ctx.sentences(text, lang) if not s.lstrip().startswith("#")]
        extra = await central(sentences, want - len(items) + 2, ctx)
        keys = {_key(i) for i in items}
        items += [s for s in extra if _key(s) not in keys][:want - len(items)]
        notices.append(Notice("Some points are sentences of the text itself: the model gave "
                              "too few.", "info"))
    if not in_language(items, target, ctx) and target in KNOWN:
        items = await _all_translated(items, foreign, target, params, ctx, notices)
    return items[:count or 5], notices


async def _all_translated(items: list[str], spare: list[str], target: str,
                          params: GenerationParams, ctx: SkillContext,
                          notices: list[Notice]) -> list[str]:
    """``items`` in ``target``: a point the model cannot translate gives way to one of its
    other points (``spare``) that it can; none left, it is left out, with a notice."""
    keys = {_key(i) for i in items}
    candidates = items + [i for i in dict.fromkeys(spare) if _key(i) not in keys]
    done: dict[str, str] = {}  # key → translated point
    for item in candidates:
        if len(done) == len(items):
            break
        translated = await _translated(item, target, params, ctx)
        if translated is not None:
            done.setdefault(_key(translated), translated)
    if len(done) < len(items):
        notices.append(Notice(f"{len(items) - len(done)} point(s) could not be put in "
                              f"{language_name(target)}: left out.", "warning"))
    return list(done.values())


def _key(text: str) -> str:
    return " ".join(text.lower().split())


async def _translated(item: str, target: str, params: GenerationParams,
                      ctx: SkillContext) -> str | None:
    """``item`` in ``target`` (as it is when it already is); None when the reply holds no
    line but labels ("The translation is:") and lines still in the item's language: smollm2
    once answered "How to translate:" and the Chinese again. (A line is not asked to be
    detected as ``target``: on one short line the detector errs, "Models are pretrained, then
    fine-tuned." is Danish to it.)"""
    if in_language([item], target, ctx):
        return item
    source = ctx.detect_language(item)
    reply = await generate_text(ctx, build_messages(item, source, target), GenerationParams(
        temperature=0.0, max_tokens=params.max_tokens))
    lines = [line for line in bullet_items(reply)
             if not line.rstrip().endswith(":") and ctx.detect_language(line) != source]
    return lines[0] if lines else None
