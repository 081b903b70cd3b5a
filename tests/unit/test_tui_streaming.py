"""The reply being written: every word of it on screen, and few layouts of the screen.

A small app with the real transcript widgets at 80×24; no daemon (the pilot tests in
tests/tui drive the whole UI against one).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App, ComposeResult

import assistant.tui
from assistant.tui.widgets.transcript import MessageView, StreamingBody, Transcript

SENTENCE = "the keeper climbed the stairs and lit the lamp while the storm broke over the rocks"


class _TranscriptApp(App[None]):
    # The real app's styles: message views as high as their text.
    CSS_PATH = Path(assistant.tui.__file__).parent / "app.tcss"

    def compose(self) -> ComposeResult:
        yield Transcript()


@pytest.mark.asyncio
async def test_streamed_text_is_all_shown_and_the_screen_is_laid_out_every_few_lines() -> None:
    app = _TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(Transcript)
        reply = await transcript.add(MessageView("assistant", status="streaming"))
        await pilot.pause()
        body = reply.query_one(StreamingBody)
        words = SENTENCE.split()
        layouts, height = 0, body.size.height
        for i in range(160):  # ~30 lines of 76 columns, in 3-word updates
            reply.append(" ".join(words[(3 * i + k) % len(words)] for k in range(3)) + " ")
            await pilot.pause()
            await pilot.pause()  # a layout, then the scroll to the end it brings
            layouts += body.size.height != height  # the body resized: the screen was laid out
            height = body.size.height
            # Every line written has room (nothing clipped), and the last one is in view.
            needed = body.get_content_height(body.size, body.size, body.size.width)
            assert body.size.height >= needed
            last_line = body.content_region.y + needed - 1
            assert transcript.region.y <= last_line < transcript.region.bottom
        lines = needed
        assert lines > 25
        # One layout per quarter transcript of text (6 lines at 24 rows), not one per line.
        assert layouts <= lines // 6 + 2, (layouts, lines)
        # A smaller terminal: the room left below the text shrinks with it, the last line
        # written stays in view.
        await pilot.resize_terminal(80, 5)
        body.show(reply.content)  # the next frame, before the text has grown
        await pilot.pause()
        await pilot.pause()
        needed = body.get_content_height(body.size, body.size, body.size.width)
        last_line = body.content_region.y + needed - 1
        assert transcript.region.y <= last_line < transcript.region.bottom
