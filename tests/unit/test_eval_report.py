"""assistant.eval.report: the quality page is rewritten from the skills' rows and keeps the
sections measured elsewhere (docs/quality.md's *Tool use*)."""

from __future__ import annotations

from pathlib import Path

from assistant.eval.report import Comparison, write

ROW = Comparison("summarize", "XSum dev-60", "ROUGE-L", 60, "qwen2.5-coder-1.5b", 0.181, 0.116,
                 "qwen2.5-coder-0.5b", None, (0.044, 0.088), (344.2, 512.0, 250.4))


def test_a_rewrite_keeps_the_sections_it_does_not_write(tmp_path: Path) -> None:
    page = tmp_path / "quality.md"
    page.write_text("# Quality\n\nold table\n\n## Tool use\n\n| mode |\n\n## Later\n\ntext\n")
    write([ROW], page)
    write([ROW], page)
    text = page.read_text()
    assert "old table" not in text and text.count("| summarize | XSum dev-60 | 60 |") == 1
    assert text.endswith("|\n\n## Tool use\n\n| mode |\n\n## Later\n\ntext\n")
    assert not (tmp_path / "quality.tmp").exists()


def test_a_new_page_is_the_skills_report_alone(tmp_path: Path) -> None:
    page = tmp_path / "quality.md"
    write([ROW], page)
    assert page.read_text().startswith("# Quality: each skill beside the bare model\n")
    assert "## " not in page.read_text()
    assert "| [+0.044, +0.088] | 344 / 512 / 250 |  |" in page.read_text()
