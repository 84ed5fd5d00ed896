"""Vorbis comments (FLAC, Ogg Vorbis, Opus): tagger's fields as comments, one entry per value.

FLAC and Ogg differ in where the comments and the audio are: `tagger.tags.storage.flac` (its
metadata blocks) and `tagger.tags.storage.ogg` (its pages, both Ogg codecs) subclass `VorbisStorage`;
the comments' raw entries (`_vorbis_entries`) serve the comment check of both.
"""

from __future__ import annotations

import struct
from collections import Counter

from tagger.tags.fields import Raw, ours
from tagger.tags.storage.base import Storage


class VorbisStorage(Storage):
    """Vorbis comments, one entry per value."""

    kind = "vorbis"

    def read(self, tags) -> Raw:
        raw: Raw = {}
        for key, value in tags:
            name = ours(key, any_case=True)
            if name:
                raw.setdefault(name, []).append(value)
        return raw

    def write(self, tags, raw: Raw) -> None:
        for key in {k for k, _ in tags if ours(k, any_case=True)}:
            del tags[key]
        for name, values in raw.items():
            tags[name] = list(values)

    def other_items(self, audio):
        return [(k, v) for k, v in audio.tags if not ours(k, any_case=True)]

    def cannot_keep(self, audio, path, version):
        # mutagen decodes a comment that is not UTF-8 with U+FFFD, drops a key it does not accept
        # ("~COMPILATION", an empty or non-ASCII one) and renames an entry without "=": a save
        # writes its view, and the other-tags digest, taken from that view, cannot see the loss.
        raw = self.comment_blocks(audio, path)
        if raw is None:
            return "its Vorbis comment header cannot be found where mutagen read it"
        loaded = self.loaded_comments(audio)
        changed: list[str] = []
        if len(raw) != len(loaded):
            changed.append(f"{len(raw)} comment block(s) in the file, {len(loaded)} read by mutagen")
        for entries, comments in zip(raw, loaded):
            kept = [comments.vendor.encode("utf-8")] + [f"{k}={v}".encode("utf-8") for k, v in comments]
            if entries == kept:
                continue
            if entries[:1] != kept[:1]:
                changed.append(f"the vendor string {_shown(entries[0] if entries else b'')}")
            lost = list((Counter(entries[1:]) - Counter(kept[1:])).elements())
            changed += [_shown(entry) for entry in lost] or ["the order of the comments"]
        changed += self.pictures_changed(audio, path)
        if not changed:
            return None
        what = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        return ("its Vorbis comments hold entries that a rewrite would change or drop (not UTF-8, or not a "
                f"NAME=value entry that mutagen accepts): {what}")  # fmt: skip

    def comment_blocks(self, audio, path: str) -> list[list[bytes]] | None:
        """The raw entries (vendor string first) of each Vorbis comment block that mutagen loaded
        (as ``audio``) from the file ``path`` and saves, read from its bytes; None when they cannot
        be found."""
        raise NotImplementedError

    def loaded_comments(self, audio) -> list:
        """The Vorbis comment blocks mutagen loaded, in the order of `comment_blocks`."""
        return [] if audio.tags is None else [audio.tags]

    def pictures_changed(self, audio, path: str) -> list[str]:
        """The picture blocks that a save would not write back byte for byte (FLAC)."""
        return []



# -- helpers ------------------------------------------------------------------------------------


def _shown(entry: bytes) -> str:
    """A tag entry of unknown bytes as text that can be printed safely (escaped, cut at 60 bytes)."""
    return repr(entry[:60]) + ("..." if len(entry) > 60 else "")


def _read_counted(f, size: int, fmt: str) -> bytes | None:
    """A length (``fmt``, 4 bytes) then that many bytes at the position of the open file ``f``
    (``size`` bytes in all; a length past the end reads what there is); None at the end."""
    head = f.read(4)
    if len(head) < 4:
        return None
    return f.read(min(struct.unpack(fmt, head)[0], max(size - f.tell(), 0)))


def _vorbis_entries(f, size: int) -> list[bytes]:
    """The raw entries of the Vorbis comment at the position of the open file ``f`` (``size``
    bytes in all): the vendor string, then each ``key=value`` comment as bytes (not decoded: a
    check on mutagen's decoded view). ``f`` is left after the last comment (before a framing
    bit); a comment cut short ends the list."""
    vendor = _read_counted(f, size, "<I")
    if vendor is None:
        return []
    entries = [vendor]
    head = f.read(4)
    for _ in range(struct.unpack("<I", head)[0] if len(head) == 4 else 0):
        entry = _read_counted(f, size, "<I")
        if entry is None:
            break
        entries.append(entry)
    return entries
