"""An example third-party plugin: the ``shout`` skill."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from assistant import ChatMessage, DeltaEvent, Event, Skill, SkillContext, Turn, hookimpl


class Shout(Skill):
    name = "shout"
    description = "Repeat the text in capitals, with the model's comment."
    examples = (
        "shout this",
        "say it loudly in capitals",
        "大声说出来",
        "crie isso",
        "schrei das laut",
        "叫んで",
        "crie-le en majuscules",
        "grítalo en mayúsculas",
    )

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        yield DeltaEvent(turn.text.upper() + "\n")
        async for piece in ctx.generate([ChatMessage("user", turn.text)]):
            yield DeltaEvent(piece)


@hookimpl
def register_skills(register: Callable[[Skill], None]) -> None:
    register(Shout())
