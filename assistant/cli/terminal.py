"""Text the CLI did not write itself, made safe to print to a terminal.

Titles, message text, file names, model metadata and error messages can come from an imported
file, a document folder or a downloaded model. Printed raw, an OSC 52 sequence writes the
user's clipboard, ``ESC[2J`` clears the screen, a C1 ``CSI`` (0x9b) does either without an
ESC, a bidi override reorders what is read, and a newline or NEL in a file name fakes a row.
Every such character is shown as its escape instead (``\\x1b``, ``\\n``, ``\\u202e``).

Neither rich nor click covers this: rich's ``strip_control_codes`` removes only BEL, BS, VT,
FF and CR, and ``Text.from_ansi`` drops the ESC sequences it parses but keeps C1 codes, NUL,
DEL and bidi controls and turns NEL and CR into line breaks; ``click.unstyle`` removes only
SGR styling. So the table below is ours: C0 and C1 controls (Unicode category Cc), DEL, the
line and paragraph separators (Zl, Zp) and the bidi embedding, override and isolate controls.
"""

from __future__ import annotations

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\x1b"}
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]  # category Cc: C0, DEL, C1
_FORMAT = [0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
           *range(0x2066, 0x206A)]  # ALM, LRM, RLM, Zl, Zp, LRE…RLO, LRI…PDI

_ESCAPES: dict[int, str] = {
    **{cp: f"\\x{cp:02x}" for cp in _CONTROLS},
    **{cp: f"\\u{cp:04x}" for cp in _FORMAT},
    **{ord(ch): escape for ch, escape in _NAMED.items()},
}
_KEEP_LAYOUT = {**_ESCAPES, ord("\n"): "\n", ord("\t"): "\t"}


def one_line(text: object) -> str:
    """``text`` as one line: every control character shown as its escape, newlines too."""
    return str(text).translate(_ESCAPES)


def block(text: object) -> str:
    """``text`` keeping its newlines and tabs, every other control character escaped (a CR
    before a newline is dropped: it only ends a Windows line)."""
    return str(text).replace("\r\n", "\n").translate(_KEEP_LAYOUT)
