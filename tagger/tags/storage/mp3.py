"""MP3: tagger's fields in the ID3v2 tag at the start of the file (`tagger.tags.storage.id3`); the
audio is everything between it and an ID3v1 tag, which is kept byte for byte. An APEv2 tag's
ReplayGain items (MP3Gain's, foobar2000's) are carried into the ID3v2 tag a write adds, with
``TXXX:INSTRUMENTS_COPIES`` listing them (what `untag` removes with tagger's fields); a second
ID3v2 tag right after the first one holding tagger's fields, and an APEv2 tag holding other fields,
are refused; an ID3v2.4 tag's footer, which mutagen leaves behind, is removed.
"""

from __future__ import annotations

import io
import os
import struct

from tagger.containers import syncsafe
from tagger.tags.fields import INSTRUMENTS_COPIES, ours
from tagger.tags.storage._bytes import _hash_range, _id3v2_end
from tagger.tags.storage.base import Format, register
from tagger.tags.storage.id3 import ID3Storage, _holds_frames


@register(Format("MP3", "MP3", (".mp3", ".mp2")))
class MP3Storage(ID3Storage):
    """MP3: the audio is everything between the ID3v2 tag and an ID3v1 tag (kept byte for byte).

    mutagen does not know an ID3v2.4 tag's footer (``3DI``, a copy of its header after the frames):
    it rewrites the header and frames and leaves the old footer where it was, in front of the
    audio; `save` removes it (the tag it writes has no footer: the footer holds nothing else)."""

    def save(self, audio, path, *, version, original):
        with open(original, "rb") as f:
            footer = _id3v24_footer(f)
        if not _holds_frames(audio.tags, version):
            from mutagen.id3 import delete

            delete(path, delete_v1=False, delete_v2=True)
        else:
            audio.save(v2_version=version, v23_sep="/", v1=1)
        if footer is not None:
            _drop_footer_left(path, footer)
        _restore_id3v1(original, path)

    def cannot_keep(self, audio, path, version):
        # TagLib shows the first tag of an MP3 that holds anything, of its ID3v2, APEv2 and ID3v1
        # tags: an APEv2 tag's fields (foobar2000's, MP3Gain's) stop showing once an ID3v2 tag is there
        later = _later_id3v2_fields(path)
        if later:
            return (f"a second ID3v2 tag right after its first one holds tagger's fields ({later}): ffmpeg reads "
                    "both tags, mutagen and TagLib the first alone, so a write to the first would leave those "
                    "values shown beside (or instead of) the new ones")  # fmt: skip
        frames = self.item_ids(path)  # (in the file's ID3v2 tag: none where it has none or an empty one)
        if frames is not None and not frames:
            shown = _apev2_keys(path)
            if shown:
                return (f"an APEv2 tag after its audio holds its fields ({shown}) and no ID3v2 tag does: TagLib "
                        "shows an MP3's APEv2 tag only while its ID3v2 tag is missing or empty, so tagger's fields "
                        "would hide them")  # fmt: skip
        return super().cannot_keep(audio, path, version)

    def apev2_frames(self, path: str) -> list:
        """The ReplayGain items of the MP3's APEv2 tag (`REPLAYGAIN`, text, any case) as the ``TXXX``
        frames of their names in upper case (mediafile reads those; TagLib and ffmpeg any case),
        their values as they are. TagLib shows an MP3's APEv2 tag only while its ID3v2 tag is
        missing or empty: the ID3v2 tag a write adds carries them (`_load_id3` in
        `tagger.tags.formats`), as it carries an ID3v1 tag's fields, and the APEv2 tag stays byte
        for byte. An APEv2 tag with other items but MP3Gain's own is refused (`cannot_keep`)."""
        from mutagen.id3 import TXXX, Encoding

        return [TXXX(encoding=Encoding.UTF8, desc=key.upper(), text=list(value))
                for key, value in _apev2_items(path) if _copied_from_apev2(key, value)]  # fmt: skip

    def marked_apev2_frames(self, path: str) -> list:
        """`apev2_frames` and, where there are any, a ``TXXX:INSTRUMENTS_COPIES`` frame listing their
        descriptions: the file's record that tagger wrote them (`copies_left`). What `_load_id3` adds."""
        from mutagen.id3 import TXXX, Encoding

        frames = self.apev2_frames(path)
        if not frames:
            return []
        return [*frames, TXXX(encoding=Encoding.UTF8, desc=INSTRUMENTS_COPIES, text=[f.desc for f in frames])]

    def copies_left(self, audio, path):
        # the copies of the APEv2 tag's ReplayGain items a write added (`marked_apev2_frames`) are those
        # TXXX:INSTRUMENTS_COPIES lists: where the ID3v2 tag holds nothing but tagger's fields, that list
        # and the copies it names, each still the same, an untag removes them, and the tag, as it was
        # missing; otherwise the copies stay (another program's since) and the list goes with tagger's
        # fields. Without the list every frame stays: a user's own TXXX:REPLAYGAIN_* frames equal to the
        # APEv2 items (foobar2000 writes both) look the same as copies tagger made before it wrote one
        tags = audio.tags
        marker = None if tags is None else tags.get(f"TXXX:{INSTRUMENTS_COPIES}")
        if marker is None:
            return []
        listed = {f"TXXX:{part}" for text in marker.text for part in str(text).split("/")}  # (v2.3: joined by /)
        rest = {key: frame for key, frame in tags.items()
                if not (frame.FrameID == "TXXX" and ours(frame.desc)) and key != marker.HashKey}  # fmt: skip
        copies = {frame.HashKey: frame for frame in self.apev2_frames(path)}
        if tags.version[1] == 1 or tags.unknown_frames or not copies or not rest.keys() == copies.keys() == listed:
            return [marker.HashKey]
        if any([str(t) for t in rest[key].text] != copies[key].text for key in copies):
            return [marker.HashKey]  # (changed since: MP3Gain run again, or a tag editor's)
        return [*sorted(copies), marker.HashKey]

    def fields_out_of_reach(self, path):
        later = _later_id3v2_fields(path)
        if later:
            return (f"a second ID3v2 tag right after its first one holds tagger's fields ({later}), which ffmpeg "
                    "shows: mutagen and TagLib read the first tag alone, where tagger writes and removes its "
                    "fields, so it cannot change or remove these")  # fmt: skip
        return None

    def id3_span(self, f, size):
        f.seek(0)
        return (0, size) if f.read(3) == b"ID3" else None

    def payload(self, f, size, h):
        from tagger.tags.storage.apev2 import trailing_tag_start  # (here: the storages register in their order)

        start = _id3v2_end(f)
        end = size
        if size - start >= 128:
            f.seek(size - 128)
            if f.read(3) == b"TAG":
                end = size - 128
        ape = trailing_tag_start(f, end)  # (MP3Gain's ReplayGain items, which no decoder plays)
        if ape is not None and ape >= start:
            end = ape
        _hash_range(f, start, end, h)
        return True


# -- helpers ------------------------------------------------------------------------------------

def _later_id3v2_fields(path: str) -> str:
    """tagger's fields (``TXXX`` frames, any case) in the ID3v2 tags that follow an MP3's first one
    back to back (another program prepended its own tag), named in one text; "" where there are
    none, or no such tag mutagen can read."""
    import mutagen
    from mutagen.id3 import ID3

    from tagger.containers import id3v2_length, id3v2_tags

    found: list[str] = []
    with open(path, "rb") as f:
        first = id3v2_length(f.read(10))
        for data in id3v2_tags(f, first) if first else ():
            try:
                tag = ID3(io.BytesIO(data), translate=False, load_v1=False)
            except (mutagen.MutagenError, *_UNREADABLE_TAG):
                tag = None
            for frame in [] if tag is None else tag.getall("TXXX"):
                name = ours(frame.desc, any_case=True)
                if name:
                    found.append(f"TXXX:{frame.desc}={'/'.join(str(t) for t in frame.text)}")
    return ", ".join(dict.fromkeys(found))


_UNREADABLE_TAG = (OSError, ValueError, struct.error, EOFError, IndexError, KeyError)
"""What mutagen may raise reading a malformed tag besides its own errors."""


REPLAYGAIN = ("REPLAYGAIN_TRACK_GAIN", "REPLAYGAIN_TRACK_PEAK", "REPLAYGAIN_ALBUM_GAIN", "REPLAYGAIN_ALBUM_PEAK")
"""The ReplayGain items of an MP3's APEv2 tag (MP3Gain's, foobar2000's) that the ID3v2 tag tagger
adds carries as ``TXXX`` frames of these descriptions: the names mediafile (beets), TagLib, ffmpeg,
foobar2000 and mpd read ReplayGain from in an ID3v2 tag (`MP3Storage.apev2_frames`)."""


def _apev2_items(path: str) -> list[tuple[str, object]]:
    """(key, value) of each item of the APEv2 tag at the end of the file ``path`` (before an ID3v1
    tag), in the tag's order; none when it has none or mutagen cannot read it."""
    import mutagen
    from mutagen.apev2 import APEv2

    try:
        return list(APEv2(path).items())
    except (mutagen.MutagenError, OSError, ValueError):
        return []


def _copied_from_apev2(key: str, value) -> bool:
    """Whether the APEv2 item ``key`` (of ``value``) is one the ID3v2 tag tagger adds carries: a
    ReplayGain item (`REPLAYGAIN`, any case) holding text."""
    from mutagen.apev2 import TEXT

    return key.upper() in REPLAYGAIN and value.kind == TEXT


def _apev2_keys(path: str) -> str:
    """The keys of the APEv2 tag at the end of the file ``path`` (before an ID3v1 tag) that no reader
    would show once the file has an ID3v2 tag, five named then a count; "" when it has none but
    MP3Gain's own items and the ReplayGain items copied into the ID3v2 tag, or mutagen cannot read it.

    MP3Gain's ``MP3GAIN_MINMAX``, ``MP3GAIN_ALBUM_MINMAX`` and ``MP3GAIN_UNDO`` are its bookkeeping
    (the undo of the gain it applied), which MP3Gain reads from the APEv2 tag itself, not fields a
    user views: hiding them from TagLib's view hides nothing (was: such an MP3 was refused). The
    ReplayGain items are shown from their copies (`MP3Storage.apev2_frames`; was: refused)."""
    keys = [key for key, value in _apev2_items(path)
            if not key.upper().startswith("MP3GAIN_") and not _copied_from_apev2(key, value)]  # fmt: skip
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _id3v24_footer(f) -> bytes | None:
    """The footer (10 bytes, ``3DI``) of the ID3v2.4 tag at the start of the open file ``f``; None
    when it has none (no footer flag, or no footer where the flag says)."""
    f.seek(0)
    head = f.read(10)
    if len(head) < 10 or head[:3] != b"ID3" or head[3] != 4 or not head[5] & 0x10:
        return None
    f.seek(10 + syncsafe(head[6:10]))
    footer = f.read(10)
    return footer if len(footer) == 10 and footer[:3] == b"3DI" else None


def _drop_footer_left(path: str, footer: bytes) -> None:
    """Remove the old tag's ``footer`` that mutagen left right after the tag it wrote (or, where it
    removed the tag, at the start) of the file ``path``; nothing when it is not there."""
    from mutagen._util import delete_bytes

    with open(path, "r+b") as f:
        head = f.read(10)
        at = 10 + syncsafe(head[6:10]) if len(head) == 10 and head[:3] == b"ID3" else 0
        f.seek(at)
        if f.read(10) == footer:
            delete_bytes(f, 10, at)


def _restore_id3v1(original: str, tmp: str) -> None:
    """Put the original ID3v1 tag back byte for byte (mutagen regenerates it from ID3v2)."""
    with open(original, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 128:
            return
        f.seek(-128, os.SEEK_END)
        old = f.read(128)
    if old[:3] != b"TAG":
        return
    with open(tmp, "r+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() >= 128:
            f.seek(-128, os.SEEK_END)
            if f.read(3) == b"TAG":
                f.seek(-128, os.SEEK_END)
                f.write(old)
                return
        f.seek(0, os.SEEK_END)
        f.write(old)
