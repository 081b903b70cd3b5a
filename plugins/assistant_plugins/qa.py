"""The qa skill (first version; issue 6 adds ingestion, hybrid retrieval and citation checks).

Answers a question from the user's documents when a document index is available, citing
passages as [n]; without one (or with no hit) it answers from the conversation only and says
so, rather than invent. Config ``[skills.qa]``: ``k`` passages (default 5).
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

SYSTEM = (
    "Answer the question using only the numbered sources below, citing them inline as [n]. "
    "If the sources do not contain the answer, say that you cannot find it in the documents."
)


class QA(Skill):
    name = "qa"
    description = "Answer questions from your own documents."
    examples = (
        "What does my document say about the refund policy?",
        "According to the report I added, what was last year's revenue?",
        "Search my notes for the meeting with Anna",
        "In the contract, when does the lease end?",
        "Find in my files where I wrote about the budget",
        "Which of my documents mention the project deadline?",
        "Based on the PDF I uploaded, who are the authors?",
        "我的文档里关于退款政策是怎么说的？",
        "根据我上传的报告，去年的收入是多少？",
        "在我的笔记里找一下和张伟开会的内容",
        "合同里写的租期什么时候结束？",
        "D'après mes documents, quelle est la politique de remboursement ?",
        "Dans le rapport que j'ai ajouté, quel est le chiffre d'affaires ?",
        "Cherche dans mes notes la réunion avec Paul",
        "Que dit le contrat sur la date de fin du bail ?",
        "Was steht in meinen Dokumenten über die Rückgabe?",
        "Laut dem hochgeladenen Bericht, wie hoch war der Umsatz?",
        "Such in meinen Notizen nach dem Treffen mit Jonas",
        "Wann endet laut Vertrag die Mietzeit?",
        "¿Qué dicen mis documentos sobre la política de reembolso?",
        "Según el informe que subí, ¿cuáles fueron los ingresos?",
        "Busca en mis notas la reunión con Lucía",
        "¿Cuándo termina el alquiler según el contrato?",
        "私の資料には返金について何と書いてありますか？",
        "アップロードした報告書によると、昨年の売上はいくらですか？",
        "メモの中から田中さんとの会議を探して",
        "契約書では賃貸期間はいつ終わりますか？",
        "Look in my documents for the warranty terms",
        "What did my notes say about the launch?",
        "According to the handbook, how many vacation days do I get?",
        "Check my files: what is the invoice total?",
        "From the manual I imported, how do I set up the printer?",
        "What does the PDF I added say about pricing?",
        "In my uploaded papers, what sample size was used?",
        "Which document of mine mentions the audit?",
        "Search my documents for the office address",
        "根据我的笔记，发布日期是哪天？",
        "在我的文件里找一下发票金额",
        "手册里怎么设置打印机？",
        "我导入的文档中提到审计了吗？",
        "我的资料里写的办公地址是什么？",
        "Dans mes notes, quelle est la date de lancement ?",
        "D'après le manuel, comment configurer l'imprimante ?",
        "Cherche dans mes fichiers le montant de la facture",
        "Lequel de mes documents parle de l'audit ?",
        "Laut Handbuch, wie richte ich den Drucker ein?",
        "Was steht in meinen Notizen zum Start?",
        "Durchsuche meine Dateien nach der Rechnung",
        "Welches meiner Dokumente erwähnt das Audit?",
        "Según el manual, ¿cómo configuro la impresora?",
        "¿Qué dicen mis notas sobre el lanzamiento?",
        "Busca en mis archivos el importe de la factura",
        "¿Cuál de mis documentos menciona la auditoría?",
        "マニュアルによるとプリンターの設定方法は？",
        "私のメモでは発売日はいつ？",
        "ファイルから請求書の金額を探して",
        "私の資料で監査について触れているのはどれ？",
        "Laut meinen Dokumenten, wann ist die Frist?",
        "What do the documents I indexed say about security?",
        "添付した資料に書かれている締め切りは？",
    )

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        question = turn.text
        passages: list[dict[str, object]] = []
        if ctx.documents is None:
            yield Notice("No document index is available yet; answering from the "
                         "conversation only.")
        else:
            passages = await ctx.documents.search(question, int(ctx.config.get("k", 5)))
            if not passages:
                yield Notice("No passage of your documents matches this question.")
        sources = "\n".join(
            f"[{i}] ({p.get('source', '?')}) {p.get('text', '')}"
            for i, p in enumerate(passages, 1)
        ) or "(no sources)"
        messages = [
            ChatMessage("system", SYSTEM),
            *ctx.history,
            ChatMessage("user", f"Sources:\n{sources}\n\nQuestion: {question}"),
        ]
        async for piece in ctx.generate(messages, GenerationParams(temperature=0.2)):
            yield DeltaEvent(piece)


@hookimpl
def register_skills(register: Callable[[Skill], None]) -> None:
    register(QA())
