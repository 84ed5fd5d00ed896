"""Text written for a person to read (a terminal, a log): the one helper every command, log line,
report and picture title passes file names and tag values through."""

from __future__ import annotations

import os
import re
import unicodedata

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 and C1 controls: ESC starts the sequences that retitle or clear a terminal
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi controls: U+202E shows "evil\u202eflac.exe" reversed
    "\u2028\u2029"  # line and paragraph separators (str.splitlines breaks lines there)
    # the other format characters (Unicode category Cf, as of Unicode 15.1): zero-width space, joiners
    # and word joiner, soft hyphen, byte order mark, tags...: invisible, so "a\u200bb.flac" and
    # "ab.flac" looked like one name
    "\xad\u0600-\u0605\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200d\u2060-\u2064\u206a-\u206f\ufeff"
    "\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
    "\ud800-\udfff]"  # lone surrogates: the bytes of a name that is not UTF-8 (no terminal can print them)
)
_UNSAFE_BUT_NEWLINE = re.compile(_UNSAFE.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))
_BACKSLASH = re.compile(r"\\(?=[xuU\\])")
"""A backslash that would read as the start of one of our escapes (or of an escaped backslash)."""


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:  # a byte of a name that is not UTF-8 (surrogateescape), as `plan.storable` writes it
        return f"\\x{c - 0xDC00:02x}"
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"


def shown(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` safe to print: every control character (newline and tab included), the bidi controls,
    the line and paragraph separators, the other invisible format characters (zero-width space and
    joiners, soft hyphen, byte order mark: Unicode category Cf) and the lone surrogates of a name that
    is not UTF-8 (the byte it stands for) written as visible ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN``
    escapes, so that a file name or tag value is one line, cannot move the cursor, retitle or clear
    the terminal or reorder what follows, always encodes, and hides no character.
    Safe to apply to text that went through it (or through `named`) already: it changes nothing there.
    ``keep_newlines``: for text of several lines that tagger composed itself (a table whose fields
    went through `shown` already)."""
    return (_UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE).sub(_escape, text)


def named(name: str | os.PathLike) -> str:
    """A file name or tag value as `shown` shows it, and apart from every other: its backslashes
    written ``\\\\`` when it holds anything escaped, or where one would read as the start of an escape
    (followed by ``x``, ``u``, ``U`` or a backslash), so that the name ``a\\x1b`` (four characters)
    and ``a`` + ESC are shown ``a\\\\x1b`` and ``a\\x1b``; other backslashes (``AC\\DC``) stay as they
    are. For the raw name, once (a second pass would double its backslashes again): a message
    holding it may then go through `shown`."""
    name = os.fsdecode(name)
    if "\\" in name:
        name = name.replace("\\", "\\\\") if _UNSAFE.search(name) else _BACKSLASH.sub(r"\\\\", name)
    return shown(name)


def named_failed(path: str, error: str) -> str:
    """`named` of the file a scan failed (``path`` and ``error`` as a scan reports them and the database
    stores them): a name that is not UTF-8 is stored with ``\\xNN`` escapes (its error says so), and is
    shown as `named` shows the name itself, ``caf\\xe9.flac``, not as the name spelt with a
    backslash, ``caf\\\\xe9.flac``."""
    from tagger.paths import UNDECODABLE, unescaped_name

    return named(unescaped_name(path) if error.startswith(UNDECODABLE) else path)


def width(text: str) -> int:
    """How many terminal columns ``text`` (as `shown` or `named` gave it) takes: East Asian wide and
    full-width characters (CJK, most emoji) take two, combining marks (the accent of an NFD ``é``)
    and other zero-width characters none, every other character one. What tables pad by, so that a
    column after a Japanese or a decomposed name still lines up."""
    if text.isascii():
        return len(text)
    return sum(_char_width(c) for c in text)


def _char_width(c: str) -> int:
    if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def padded(text: str, columns: int) -> str:
    """``text`` followed by the spaces that make it ``columns`` terminal columns wide (`width`)."""
    return text + " " * (columns - width(text))
