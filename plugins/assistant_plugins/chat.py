"""The chat skill: general conversation with history and a configurable system prompt.

Config, ``[skills.chat]``: ``system_prompt`` (str), ``model`` (a model name; default: the
daemon's default model). The whole history is given to the model: when it outgrows the
context, the daemon folds older turns into a summary the user can see (never a silent cut),
which arrives here as a system note and joins the system prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from assistant import ChatMessage, DeltaEvent, Event, Skill, SkillContext, Turn, hookimpl

DEFAULT_SYSTEM_PROMPT = "You are a helpful, concise assistant. Answer in the user's language."


class Chat(Skill):
    name = "chat"
    description = "General conversation; the fallback when no other skill fits."
    own_loop = False  # awaits everything: no thread needed for the daemon's own skills
    structured_output = True  # it generates with ctx.params, the request's
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
        "How tall is Mount Everest?",
        "What's your favourite colour?",
        "Write a story about a dragon",
        "How do I make pancakes?",
        "Explain quantum computing simply",
        "Can you help me debug this JavaScript error?",
        "What's a healthy breakfast?",
        "Who was Albert Einstein?",
        "I had a rough day at work",
        "What is machine learning?",
        "Any tips for learning guitar?",
        "最近有什么好看的书？",
        "怎么学英语比较快？",
        "你会做饭吗？",
        "帮我写一封请假邮件",
        "地球为什么会转？",
        "告诉我一些健康饮食的建议",
        "Comment vas-tu aujourd'hui ?",
        "Quel est ton film préféré ?",
        "Aide-moi à préparer un entretien d'embauche",
        "Qu'est-ce que l'intelligence artificielle ?",
        "Donne-moi une idée de cadeau",
        "Wie funktioniert ein Computer?",
        "Was ist dein Lieblingsessen?",
        "Gib mir Tipps für ein Vorstellungsgespräch",
        "Wie lerne ich am schnellsten Gitarre?",
        "Wer war Goethe?",
        "¿Qué tiempo hace hoy?",
        "¿Cómo hago una tortilla de patatas?",
        "Dame consejos para dormir mejor",
        "¿Quién fue Frida Kahlo?",
        "Ayúdame a escribir un mensaje de cumpleaños",
        "趣味は何ですか？",
        "おいしいラーメン屋を教えて",
        "英語の勉強法を教えてください",
        "元気が出る言葉をください",
        "人工知能について教えて",
        "週末のおすすめの過ごし方は？",
        "どうして空は青いの？",
        "Thank you so much!",
        "谢谢你，帮了大忙",
        "Merci, c'est parfait",
        "Danke dir, super!",
        "Muchas gracias, eres genial",
        "本当にありがとう",
        "How can I improve my English pronunciation?",
        "学法语有什么好方法？",
        "Is German hard to learn?",
        "¿Es difícil aprender chino?",
        "日本語の文法は難しいですか？",
        "Schreib eine Geschichte über einen Hund",
        "Écris une chanson sur l'été",
        "桜についての俳句を作って",
        "给我写一首关于月亮的诗",
        "How old is the universe?",
        "東京タワーの高さは？",
        "Quelle est la population de la France ?",
        "What are the benefits of exercise?",
        "Quels sont les avantages du vélo ?",
    )

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        # ctx.params are the request's: a JSON schema or grammar it gives shapes the reply.
        system = str(ctx.config.get("system_prompt") or DEFAULT_SYSTEM_PROMPT)
        notes = [m.content for m in ctx.history if m.role == "system"]
        history = [m for m in ctx.history if m.role != "system"]
        messages = [ChatMessage("system", "\n\n".join([system, *notes])), *history,
                    ChatMessage("user", turn.text)]
        async for piece in ctx.generate(messages):
            yield DeltaEvent(piece)


@hookimpl
def register_skills(register: Callable[[Skill], None]) -> None:
    register(Chat())
