"""The transcript: one view per message of the active path.

A reply being written is plain text, appended to as it arrives; it is rendered as Markdown
once, when it is complete: parsing Markdown and mounting its blocks on every update took CPU
from the model, which decodes on the same cores. For the same reason the text being written
grows a few lines at a time (:class:`StreamingBody`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Markdown, Static

from assistant.confidence import is_low, percent
from assistant.tui.api import StoredMessage

_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)

# Roles the transcript shows; any other (system, a role added later) is left out.
SHOWN_ROLES = frozenset({"user", "assistant", "summary"})


def last_code_block(text: str) -> str | None:
    blocks = _FENCE.findall(text)
    return blocks[-1].rstrip("\n") if blocks else None


class StreamingBody(Static):
    """The body of a reply being written: plain text, shown again as it grows.

    An update repaints this widget alone. Only when the text outgrows the lines it has is the
    screen laid out again, and then it is given a quarter of the transcript's height more than
    it needs, so a streaming reply costs one layout every few lines rather than one per update:
    a layout (the whole screen arranged, the transcript scrolled and repainted) costs several
    times a repaint, and the model that writes the reply decodes on the same cores. After a
    resize that leaves more room than that below the text, the room is cut back, so the
    newest line stays in view.
    """

    def __init__(self, text: str = "") -> None:
        super().__init__(text, classes="body", markup=False)

    def show(self, text: str) -> None:
        if not self.is_attached:  # the conversation was closed while the reply streamed
            return
        self.update(text, layout=False)
        width, height = self.size
        needed = self.get_content_height(self.size, self.size, width) if width else 1
        view = next((a for a in self.ancestors if isinstance(a, Transcript)), self.screen)
        room = max(1, view.size.height // 4)
        if needed > height or height - needed > room:
            self.styles.min_height = needed + self.styles.gutter.height + room


def support_lines(citations: Sequence[dict[str, Any]]) -> str:
    """The sentence each cited passage supports the answer with, quoted under its number."""
    return "\n".join(f"[{c.get('number', '?')}] \u201c{c['support']}\u201d" for c in citations
                     if isinstance(c.get("support"), str) and c["support"])


class MessageView(Vertical):
    """A message: a one-line header (who, skill, status), then the text; under a reply, the
    supporting sentence of each source it cites and how sure the model was (dim, or a
    warning when the figure is low)."""

    def __init__(self, role: str, content: str = "", *, message_id: str | None = None,
                 skill: str | None = None, status: str = "complete",
                 branches: tuple[int, int] | None = None, confidence: float | None = None,
                 citations: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(classes=f"message {role}")
        self.role = role
        self.content = content
        self.message_id = message_id
        self.skill = skill
        self.status = status
        self.branches = branches
        self.confidence = confidence
        self.citations = tuple(citations)
        self._plain: StreamingBody | None = None  # the body while the reply streams

    def compose(self) -> ComposeResult:
        yield Static(self._header(), classes="header", markup=False)
        if self.role == "assistant" and self.status == "streaming":
            self._plain = StreamingBody(self.content)
            yield self._plain
        elif self.role == "assistant":
            yield Markdown(self.content, classes="body")
        else:
            yield Static(self.content, classes="body", markup=False)
        if self.role == "assistant":
            yield Static("", classes="support", markup=False)
            yield Static("", classes="sureness", markup=False)

    def on_mount(self) -> None:
        self._show_footer()

    def set_footer(self, *, confidence: float | None = None,
                   citations: Sequence[dict[str, Any]] | None = None) -> None:
        """A reply's confidence (the ``done`` event's, the stored one) and citations."""
        if confidence is not None:
            self.confidence = confidence
        if citations is not None:
            self.citations = tuple(citations)
        self._show_footer()

    def _show_footer(self) -> None:
        for support in self.query(".support").results(Static):
            lines = support_lines(self.citations)
            support.update(lines)
            support.display = bool(lines)
        for sure in self.query(".sureness").results(Static):
            value = self.confidence
            low = is_low(value)
            sure.update(f"low confidence \u00b7 {percent(value)} sure" if low
                        else f"{percent(value)} sure")
            sure.set_class(low, "low")
            sure.display = value is not None

    @property
    def streaming(self) -> bool:
        return self._plain is not None

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
        for header in self.query(".header").results(Static):  # none once the view is removed
            header.update(self._header())

    def matches(self, message: StoredMessage) -> bool:
        """Whether this view already shows ``message`` as stored (ids aside when not known)."""
        return (not self.streaming and self.role == message.role
                and self.content == message.content
                and self.message_id in {None, message.id})

    def update_from(self, message: StoredMessage, branches: tuple[int, int] | None) -> None:
        self.message_id = message.id
        self.branches = branches
        if message.skill:
            self.skill = message.skill
        self.set_header(status=message.status)
        self.set_footer(confidence=message.confidence, citations=message.citations)

    def append(self, text: str) -> None:
        """Add streamed text to a reply that is still being written."""
        self.content += text
        if self._plain is not None:
            self._plain.show(self.content)

    async def finish(self) -> None:
        """Render the whole reply as Markdown, once."""
        plain, self._plain = self._plain, None
        if plain is None or not self.is_attached:  # removed: another conversation was opened
            return
        with self.app.batch_update():
            await plain.remove()
            await self.mount(Markdown(self.content, classes="body"),
                             after=self.query_one(".header"))


class SummaryView(MessageView):
    """A compaction summary: the model is given it instead of the turns above it. Undone, it
    stays in the path but the model is given those turns again."""

    def __init__(self, content: str = "", *, message_id: str | None = None,
                 status: str = "complete") -> None:
        super().__init__("summary", content, message_id=message_id, status=status)
        self._show_status()

    def compose(self) -> ComposeResult:
        yield Static(self.content, classes="body", markup=False)

    def _show_status(self) -> None:
        undone = self.status == "undone"
        self.border_title = "Summary (undone)" if undone else "Summary of earlier turns"
        self.set_class(undone, "undone")

    def set_header(self, *, skill: str | None = None, status: str | None = None) -> None:
        if status is not None:
            self.status = status
        self._show_status()


def view_for(message: StoredMessage, branches: tuple[int, int] | None = None) -> MessageView:
    if message.role == "summary":
        return SummaryView(message.content, message_id=message.id, status=message.status)
    return MessageView(message.role, message.content, message_id=message.id,
                       skill=message.skill, status=message.status, branches=branches,
                       confidence=message.confidence, citations=message.citations)


class Transcript(VerticalScroll):
    """The active path of the open conversation."""

    can_focus = True

    def views(self) -> list[MessageView]:
        return list(self.query(MessageView))

    async def show(self, messages: list[StoredMessage],
                   branches: dict[str, tuple[int, int]] | None = None) -> None:
        """Show ``messages``, keeping the views that already show them (after a turn, all
        but the new ones), so a long conversation is not mounted and laid out again."""
        branches = branches or {}
        shown = [m for m in messages if m.role in SHOWN_ROLES]
        views = self.views()
        kept = 0
        for view, message in zip(views, shown, strict=False):
            if not view.matches(message):
                break
            kept += 1
        with self.app.batch_update():
            for view in views:
                view.remove_class("found")
            for view, message in zip(views[:kept], shown[:kept], strict=True):
                view.update_from(message, branches.get(message.id))
            stale = views[kept:] + (list(self.query(".empty")) if shown else [])
            if stale:
                await self.remove_children(stale)
            if shown[kept:]:
                await self.mount_all([view_for(m, branches.get(m.id)) for m in shown[kept:]])
            elif not shown and not self.query(".empty"):
                await self.mount(Static(
                    "Ask anything.  / lists commands · Ctrl+F searches history · F1 shows keys",
                    classes="empty"))
        self.scroll_end(animate=False)

    async def add(self, view: MessageView, before: MessageView | None = None) -> MessageView:
        for empty in self.query(".empty"):
            await empty.remove()
        if before is not None and before.parent is self:
            await self.mount(view, before=before)
        else:
            await self.mount(view)
        self.anchor()
        self.scroll_end(animate=False)
        return view

    async def add_summary(self, view: SummaryView, covers: object,
                          question: MessageView | None) -> None:
        """A summary the daemon just wrote: it stands for the first ``covers`` messages of the
        path and goes above the rest; without a usable count, above ``question``. (The store's
        copy, loaded when the turn ends, puts it right in any case.)"""
        views = self.views()
        before = question
        if isinstance(covers, int) and 0 <= covers < len(views) - 1:
            before = views[covers]
        await self.add(view, before=before)

    def last_reply(self) -> MessageView | None:
        replies = [v for v in self.views() if v.role == "assistant"]
        return replies[-1] if replies else None

    def last_user(self) -> MessageView | None:
        mine = [v for v in self.views() if v.role == "user"]
        return mine[-1] if mine else None

    def last_code_block(self) -> str | None:
        for view in reversed(self.views()):
            code = last_code_block(view.content)
            if code is not None:
                return code
        return None

    def summary_to_toggle(self) -> tuple[str, bool] | None:
        """The summary F7 acts on, and whether it is to be undone: the last one in force (what
        the store gives the model: complete, not undone) or, with none in force, the last one
        undone. None without a summary. The blocks shown, not the store's copy: a summary
        event's block is here before that copy is loaded again."""
        in_force: str | None = None
        undone: str | None = None
        for view in self.views():
            if isinstance(view, SummaryView) and view.message_id:
                if view.status == "complete":
                    in_force = view.message_id
                else:
                    undone = view.message_id
        if in_force is not None:
            return in_force, True
        return (undone, False) if undone is not None else None

    def focus_message(self, message_id: str) -> None:
        for view in self.views():
            if view.message_id == message_id:
                view.add_class("found")
                self.scroll_to_widget(view, animate=False, top=True)
                return
