"""Text written for a person to read (a terminal, a log): the one helper every command, log line,
report and picture title passes file names and tag values through."""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 and C1 controls: ESC starts the sequences that retitle or clear a terminal
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi controls: U+202E shows "evil\u202eflac.exe" reversed
    "\u2028\u2029"  # line and paragraph separators (str.splitlines breaks lines there)
    "\ud800-\udfff]"  # lone surrogates: the bytes of a name that is not UTF-8 (no terminal can print them)
)
_UNSAFE_BUT_NEWLINE = re.compile(_UNSAFE.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:  # a byte of a name that is not UTF-8 (surrogateescape), as `plan.storable` writes it
        return f"\\x{c - 0xDC00:02x}"
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def shown(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` safe to print: every control character (newline and tab included), the bidi controls,
    the line and paragraph separators, and the lone surrogates of a name that is not UTF-8 (the byte
    it stands for) written as visible ``\\xNN`` / ``\\uNNNN`` escapes, so that a file name or tag
    value is one line, cannot move the cursor, retitle or clear the terminal or reorder what
    follows, and always encodes.
    ``keep_newlines``: for text of several lines that tagger composed itself (a table whose fields
    went through `shown` already)."""
    return (_UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE).sub(_escape, text)
