"""Reading a file into located text sections: pages of a PDF, paragraphs of everything else.

Raises :class:`DocumentError` for what cannot be indexed: an unknown suffix, a binary or
undecodable file, a PDF the reader gives up on (whatever it raises, a safety limit
included) or without a text layer, or a file with no text at all.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import stat
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from assistant.errors import InputError

SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


class DocumentError(InputError):
    """A file that cannot be added to the document index."""


@dataclass(frozen=True)
class Section:
    """Text and where it is: ``"p. 3"`` (PDF page) or ``"line 12"``."""

    location: str
    text: str


@dataclass(frozen=True)
class Document:
    path: Path
    title: str
    sha256: str
    sections: list[Section]


MAX_FILE_BYTES = 200_000_000
_MARKUP = {".md", ".markdown", ".html", ".htm"}  # files whose headings are headings


def read_document(path: Path) -> Document:
    """Read ``path`` into sections; the hash is of the file's bytes."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DocumentError(f"{path}: unsupported file type {suffix or '(none)'}",
                            "Supported: .txt, .md, .html and .pdf.")
    try:
        # Opened without blocking and checked before reading: a FIFO or a device named
        # notes.txt must not hang the reader, nor a huge file fill the memory.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DocumentError(f"{path}: not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise DocumentError(
                    f"{path}: {info.st_size / 1e6:.0f} MB is more than the "
                    f"{MAX_FILE_BYTES // 1_000_000} MB a document may have",
                    "Split it into smaller files.")
            data = fh.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DocumentError(f"{path}: cannot be read ({reason})") from None
    digest = hashlib.sha256(data).hexdigest()
    if suffix == ".pdf":
        sections = _pdf(path, data)
    else:
        if b"\x00" in data[:8192]:
            raise DocumentError(f"{path}: looks like a binary file, not text")
        try:
            content = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DocumentError(f"{path}: is not UTF-8 text") from None
        if suffix in {".html", ".htm"}:
            content = html_text(content)
        sections = paragraphs(content, headings=suffix in _MARKUP)
    if not any(s.text.strip() for s in sections):
        raise DocumentError(f"{path}: contains no text to index")
    return Document(path, _title(path, sections), digest, sections)


# An ATX heading; a closing run of '#' only after a space ("Why C#" keeps its '#').
_HEADING = re.compile(r" {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*")
_SETEXT = re.compile(r" {0,3}(?:=+|-+)[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


def paragraphs(content: str, headings: bool = False) -> list[Section]:
    """Blank-line separated paragraphs, each located by its first line number and, with
    ``headings`` (Markdown, HTML), under a heading, that heading: ``"Evaluation, line 40"``. A
    citation then names the passage's own section, not the document's first heading. ``#``
    lines inside fenced code are not headings."""
    out: list[Section] = []
    line_no = 1
    heading = ""
    fence = ""
    for block in re.split(r"(\n\s*\n)", content):
        if block.strip() and not re.fullmatch(r"\n\s*\n", block):
            lead = len(block) - len(block.lstrip("\n"))
            found: list[tuple[int, str]] = []  # (line index in the block, heading)
            lines = block.strip("\n").splitlines()
            for i, line in enumerate(lines):
                opening = _FENCE.match(line)
                if opening and (not fence or opening.group(1).startswith(fence)):
                    fence = "" if fence else opening.group(1)
                elif headings and not fence:
                    if match := _HEADING.fullmatch(line):
                        found.append((i, match.group(1).strip()))
                    elif i and _SETEXT.fullmatch(line) and lines[i - 1].strip():
                        found.append((i - 1, lines[i - 1].strip()))
            if found and found[0][0] == 0:  # the paragraph starts with its own heading
                heading = found[0][1]
            where = f"line {line_no + lead}"
            out.append(Section(f"{heading[:80]}, {where}" if heading else where, block.strip()))
            if found:
                heading = found[-1][1]
        line_no += block.count("\n")
    return out


def _pdf(path: Path, data: bytes) -> list[Section]:
    import io

    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except LimitReachedError as exc:  # a Flate bomb, a 3M-operator stream, a cycle
        raise DocumentError(f"{path}: goes past a safety limit of the PDF reader ({exc})",
                            "It may be crafted to exhaust memory; it was not indexed.") from None
    except Exception as exc:  # pypdf raises many kinds on a broken file; each is this file's
        raise DocumentError(
            f"{path}: is not a readable PDF ({type(exc).__name__}: {exc})") from None
    if not any(p.strip() for p in pages):
        raise DocumentError(f"{path}: the PDF has no text layer (a scan?)",
                            "Run it through OCR first, then add the result.")
    return [Section(f"p. {i}", p.strip()) for i, p in enumerate(pages, 1) if p.strip()]


class _TextOf(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "head", "template"})
    _BLOCK = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
                        "section", "article", "pre", "blockquote", "title", "ul", "ol",
                        "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
            if re.fullmatch(r"h[1-6]", tag) and not self.skip:
                self.parts.append("#" * int(tag[1]) + " ")  # a section for citations

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_text(markup: str) -> str:
    """The visible text of an HTML page, one paragraph per block element."""
    parser = _TextOf()
    parser.feed(markup)
    text = html.unescape("".join(parser.parts))
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    return re.sub(r"\n\s*\n(\s*\n)*", "\n\n", text).strip()


def _title(path: Path, sections: list[Section]) -> str:
    first = sections[0].text.strip().splitlines()[0] if sections else ""
    first = first.lstrip("# ").strip()
    return first[:80] if 0 < len(first) <= 80 else path.name
