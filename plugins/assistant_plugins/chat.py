"""The chat skill: general conversation with history and a configurable system prompt.

Config, ``[skills.chat]``: ``system_prompt`` (str), ``max_history`` (messages kept, default 20),
``model`` (a model name; default: the daemon's default model).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from assistant import ChatMessage, DeltaEvent, Event, Skill, SkillContext, Turn, hookimpl

DEFAULT_SYSTEM_PROMPT = "You are a helpful, concise assistant. Answer in the user's language."


class Chat(Skill):
    name = "chat"
    description = "General conversation; the fallback when no other skill fits."
    examples = (
        "Hi, how are you doing today?",
        "Tell me a joke about cats",
        "What is the capital of Australia?",
        "Can you help me write a Python function that reverses a list?",
        "Explain how photosynthesis works",
        "What should I cook for dinner tonight?",
        "Write a short poem about the sea",
        "Why is the sky blue?",
        "Give me some tips for a job interview",
        "What's the difference between a list and a tuple in Python?",
        "Recommend a good science fiction book",
        "How do I fix a flat bicycle tire?",
        "Thanks, that was helpful!",
        "你好，今天过得怎么样？",
        "给我讲个笑话吧",
        "中国的首都是哪里？",
        "帮我写一首关于春天的诗",
        "晚饭吃什么好呢？",
        "如何学好编程？",
        "Bonjour, comment ça va ?",
        "Raconte-moi une blague",
        "Quelle est la capitale du Canada ?",
        "Peux-tu m'aider à écrire un e-mail à mon patron ?",
        "Pourquoi le ciel est-il bleu ?",
        "Hallo, wie geht es dir?",
        "Erzähl mir einen Witz",
        "Wie hoch ist die Zugspitze?",
        "Kannst du mir beim Programmieren helfen?",
        "Was soll ich heute Abend kochen?",
        "Hola, ¿qué tal estás?",
        "Cuéntame un chiste",
        "¿Cuál es la capital de Argentina?",
        "¿Me ayudas a planear un viaje a México?",
        "¿Por qué el cielo es azul?",
        "こんにちは、元気ですか？",
        "面白い話をして",
        "日本で一番高い山は何ですか？",
        "今日の夕食は何がいいかな？",
        "プログラミングを教えてください",
    )

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        system = str(ctx.config.get("system_prompt") or DEFAULT_SYSTEM_PROMPT)
        keep = int(ctx.config.get("max_history", 20))
        history = list(ctx.history)[-keep:] if keep > 0 else []
        messages = [ChatMessage("system", system), *history, ChatMessage("user", turn.text)]
        async for piece in ctx.generate(messages):
            yield DeltaEvent(piece)


@hookimpl
def register_skills(register: Callable[[Skill], None]) -> None:
    register(Chat())
