"""The transcript: one view per message, assistant replies rendered as streaming Markdown."""

from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from assistant.tui.api import StoredMessage

_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)


def last_code_block(text: str) -> str | None:
    blocks = _FENCE.findall(text)
    return blocks[-1].rstrip("\n") if blocks else None


class MessageView(Vertical):
    """A message: a one-line header (who, skill, status), then the text."""

    def __init__(self, role: str, content: str = "", *, message_id: str | None = None,
                 skill: str | None = None, status: str = "complete",
                 branches: tuple[int, int] | None = None) -> None:
        super().__init__(classes=f"message {role}")
        self.role = role
        self.content = content
        self.message_id = message_id
        self.skill = skill
        self.status = status
        self.branches = branches
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        yield Static(self._header(), classes="header", markup=False)
        if self.role == "assistant":
            yield Markdown(self.content, classes="body")
        else:
            yield Static(self.content, classes="body", markup=False)

    def _header(self) -> str:
        who = "you" if self.role == "user" else (self.skill or "assistant")
        parts = [who]
        if self.branches and self.branches[1] > 1:
            parts.append(f"branch {self.branches[0]}/{self.branches[1]}")
        if self.status not in {"complete", "streaming"}:
            parts.append(self.status)
        return " · ".join(parts)

    def set_header(self, *, skill: str | None = None, status: str | None = None) -> None:
        if skill is not None:
            self.skill = skill
        if status is not None:
            self.status = status
        self.query_one(".header", Static).update(self._header())

    async def append(self, text: str) -> None:
        self.content += text
        if self._stream is None:
            self._stream = Markdown.get_stream(self.query_one(Markdown))
        await self._stream.write(text)

    async def finish(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None


class Transcript(VerticalScroll):
    """The active path of the open conversation."""

    can_focus = True

    def views(self) -> list[MessageView]:
        return list(self.query(MessageView))

    async def show(self, messages: list[StoredMessage],
                   branches: dict[str, tuple[int, int]] | None = None) -> None:
        await self.remove_children()
        views = [
            MessageView(m.role, m.content, message_id=m.id, skill=m.skill, status=m.status,
                        branches=(branches or {}).get(m.id))
            for m in messages if m.role in {"user", "assistant"}
        ]
        if views:
            await self.mount_all(views)
        else:
            await self.mount(Static(
                "Ask anything.  / lists commands · Ctrl+F searches history · F1 shows keys",
                classes="empty"))
        self.scroll_end(animate=False)

    async def add(self, view: MessageView) -> MessageView:
        for empty in self.query(".empty"):
            await empty.remove()
        await self.mount(view)
        self.anchor()
        self.scroll_end(animate=False)
        return view

    def last_reply(self) -> MessageView | None:
        replies = [v for v in self.views() if v.role == "assistant"]
        return replies[-1] if replies else None

    def last_user(self) -> MessageView | None:
        mine = [v for v in self.views() if v.role == "user"]
        return mine[-1] if mine else None

    def focus_message(self, message_id: str) -> None:
        for view in self.views():
            if view.message_id == message_id:
                view.add_class("found")
                self.scroll_to_widget(view, animate=False, top=True)
                return
