"""The `Storage` base class, the registry of storages by mutagen file type (`register`,
`storage_for`, `STORAGES`, and each type's `Format`: its name for users and its extensions) and
`payload_digest`, which dispatches to the storage of a file's type.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tagger.tags.fields import INSTRUMENTS_MODEL, Raw
from tagger.tags.storage._bytes import _feed

STORAGES: dict[str, Storage] = {}
"""mutagen file type name -> the storage of our fields in it."""


@dataclass(frozen=True)
class Format:
    """A file format tagger writes tags into, as its storage class registers it."""

    mutagen_type: str
    """The name of mutagen's class for it (``MP3``, ``OggVorbis``): what `STORAGES` is keyed by."""
    label: str
    """Its name for users (``Ogg Vorbis``), in `supported_formats`."""
    extensions: tuple[str, ...] = ()
    """The file extensions that name it: a file so named is read as this format even where mutagen
    does not recognise its first bytes."""
    load: Callable[[], type] | None = None
    """Returns mutagen's class (default: class `mutagen_type` of module ``mutagen.<mutagen_type lower>``)."""

    def mutagen_class(self) -> type:
        if self.load is not None:
            return self.load()
        import importlib

        return getattr(importlib.import_module(f"mutagen.{self.mutagen_type.lower()}"), self.mutagen_type)


FORMATS: dict[str, Format] = {}
"""mutagen file type name -> the format, in the order the storage classes registered them."""


def register(*formats: Format):
    """Class decorator: use this storage class for files of these formats (one instance for all)."""

    def add(cls):
        storage = cls()
        for fmt in formats:
            STORAGES[fmt.mutagen_type] = storage
            FORMATS[fmt.mutagen_type] = fmt
        return cls

    return add


def supported_formats() -> str:
    """The formats tagger writes tags into, for messages (``MP3, WAV, ...``)."""
    return ", ".join(f.label for name, f in FORMATS.items() if name in STORAGES)


def format_named(filename: str) -> Format | None:
    """The format whose extension `filename` has, or None."""
    ext = os.path.splitext(filename)[1].lower()
    return next((f for name, f in FORMATS.items() if ext in f.extensions and name in STORAGES), None)


def storage_for(audio) -> Storage | None:
    """The storage of a loaded mutagen file, or None when tagger does not write into its format."""
    return STORAGES.get(type(audio).__name__)


class Storage:
    """Our fields in one tag container (subclasses implement the container's access)."""

    kind = "?"
    """The container's name (``id3``, ``vorbis``, ``mp4``, ``asf``)."""

    def read(self, tags) -> Raw:
        """Our fields in the (loaded, not None) tag object."""
        raise NotImplementedError

    def write(self, tags, raw: Raw) -> None:
        """Replace our fields in the tag object with ``raw``; other tags are not touched."""
        raise NotImplementedError

    def delete(self, tags) -> None:
        """Remove our fields (and nothing else) from the tag object."""
        self.write(tags, {})

    def other_items(self, audio) -> Iterable[tuple]:
        """(key, value) of every tag of the file except ours, in a stable order."""
        raise NotImplementedError

    def save(self, audio, path: str, *, version: int | None, original: str) -> None:
        """Save the loaded file ``audio`` (loaded from ``path``, a copy of ``original``)."""
        audio.save()

    def version(self, audio, id3v23: bool | None, raw: Raw) -> tuple[int | None, bool]:
        """(tag version to save, whether saving converts the file's existing tag to it)."""
        return None, False

    def cannot_keep(self, audio, path: str, version: int | None) -> str | None:
        """Why saving the file loaded from ``path`` at ``version`` would lose or change a tag that is
        not ours (then nothing is written), or None."""
        return None

    def add_copies(self, audio, path: str) -> None:
        """Add to the loaded file's tag (from ``path``) the copies of another tag's fields that a
        write's tag carries, where that other tag stops showing once the file's tag shows anything (a
        WavPack's ID3v2 tag in front: `APEv2Storage.add_copies`; the ID3 containers' copies are
        `tagger.tags.formats._load_id3`'s). Nothing by default."""

    def copies_left(self, audio, path: str) -> list[str]:
        """The keys (as `other_items` gives them) of the items of the loaded file's tag (from
        ``path``) that a removal of tagger's fields removes too: the copies of another tag's fields
        that tagger added (an MP3's APEv2 ReplayGain items: `MP3Storage.marked_apev2_frames`; a
        WavPack's ID3v2 fields: `APEv2Storage.add_copies`) and the ``INSTRUMENTS_COPIES`` item that
        lists them, where the tag holds nothing else but tagger's fields and each copy is still the
        same (the tag goes with them, giving back the file as it was); that item alone otherwise (the
        copies are another program's since). None where the tag has no such item: nothing else
        tells tagger's copies from a user's own items of the same values. None by default."""
        return []

    def fields_out_of_reach(self, path: str) -> str | None:
        """Why the file ``path`` holds tagger's fields where tagger neither reads nor writes them (an
        MP3's second ID3v2 tag), which a write or removal that changes nothing where it looks would
        leave there without a word; None where it holds none."""
        return None

    def prepare(self, audio, version: int | None) -> None:
        """Convert the loaded file's other tags for a save at ``version`` (`cannot_keep` said yes)."""

    def item_ids(self, path: str) -> Counter | None:
        """The names of the file's tag items, read from its bytes alone (not by mutagen), where the
        container lists them (ID3 frames); None otherwise. Empty when the file has no tag."""
        return None

    def expected_item_ids(self, audio, version: int | None) -> Counter | None:
        """What `item_ids` must find once the loaded file is saved at ``version``."""
        return None

    def item_values(self, path: str) -> Counter | None:
        """(key, digest of its stored value) of each tag item of the file but ours, read from its
        bytes alone and normalised so that only re-encodings every reader reads the same compare
        equal, where the container has a check on mutagen's re-encoding (MP4); None otherwise. A
        save must keep them: mutagen reads some values back the same that it wrote differently."""
        return None

    def payload(self, f, size: int, h) -> bool:
        """Feed the bytes that decide what the open file ``f`` (``size`` bytes) decodes to (its audio
        and codec headers; not its tags, nor what a tag write rewrites) to the hash ``h``
        (`payload_digest` lists them per format); False when the format has no cheap check."""
        return False

    def payload_change_reason(self, path: str) -> str | None:
        """Why a save changes the payload (`payload`) of the file ``path`` where the file tells it
        (said by the verification that found the written copy's payload changed); None otherwise."""
        return None

    # -- shared by every container ----------------------------------------------------------------
    def get(self, audio) -> Raw:
        """Our fields in a loaded file (empty values dropped); none when INSTRUMENTS_MODEL is not
        among them: fields of those names without it are someone else's (`foreign`)."""
        raw = self._fields(audio)
        return raw if INSTRUMENTS_MODEL in raw else {}

    def foreign(self, audio) -> list[str]:
        """The names of the fields with our names that are not ours (no INSTRUMENTS_MODEL beside
        them: tagger always writes it), which a write must not replace, and of the fields named
        like ours in another case where the container's names are case-sensitive (a
        ``TXXX:instruments``: someone else's, which readers that ignore case would mistake for ours
        beside the one a write would add)."""
        raw = self._fields(audio)
        lookalikes = [] if audio.tags is None else sorted(set(self.lookalikes(audio.tags)))
        return ([] if INSTRUMENTS_MODEL in raw else sorted(raw)) + lookalikes

    def lookalikes(self, tags) -> Iterable[str]:
        """The names of the fields named like ours in another case, in a container whose names are
        case-sensitive (none where they are not)."""
        return ()

    def _fields(self, audio) -> Raw:
        if audio.tags is None:
            return {}
        return {k: v for k, v in self.read(audio.tags).items() if v}

    def set(self, audio, raw: Raw, *, drop: Iterable[str] = ()) -> None:
        """Replace our fields in a loaded file, adding a tag when it has none and ``raw`` is not empty;
        remove the items ``drop`` too (their keys, as `copies_left` gives them)."""
        if audio.tags is None:
            if not raw:
                return
            audio.add_tags()
        self.write(audio.tags, raw)
        for key in drop:
            del audio.tags[key]

    def other_tags(self, audio) -> dict[str, str]:
        """A digest of every tag of the file except ours (cover art included), per key (the FLAC
        PICTURE blocks as ``<pictures>``): equal mappings, equal tags; the keys that differ name
        what changed.

        Streamed into hashes: no copy of the tag data is held (covers can be tens of megabytes).
        """
        hashes: dict = {}
        for key, value in [] if audio.tags is None else self.other_items(audio):
            h = hashes.setdefault(str(key), hashlib.sha256())
            _feed(h, key)
            _feed(h, value)
        pictures = getattr(audio, "pictures", None)  # FLAC PICTURE blocks
        if pictures is not None:
            h = hashes.setdefault("<pictures>", hashlib.sha256())
            for pic in pictures:
                _feed(h, [pic.type, pic.mime, pic.desc, pic.width, pic.height, pic.depth, pic.colors, pic.data])
        return {key: h.hexdigest() for key, h in hashes.items()}


def payload_digest(path: str, mutagen_type: str, *, progress: Callable[[int], None] | None = None) -> str | None:
    """Hash of the bytes that decide what the file ``path`` (read as ``mutagen_type``) decodes to:
    its audio and its codec headers, not its tags nor what tag writes rewrite (padding, offsets,
    page numbers); None when the format has no cheap check. ``progress``: called with the length of
    each block as it is hashed (for a caller that reports its progress on a large file).

    What each storage's `Storage.payload` hashes (and leaves out):

    - MP3: every byte between the ID3v2 tag(s) and an APEv2 tag at the end or an ID3v1 tag (frame
      headers and Xing/LAME header included; the APEv2 tag was until 2026-12-07, and MP3Gain's
      analysis, which adds one, cost an analysis of every file);
    - FLAC: STREAMINFO and the frames (not the other metadata blocks: comments, pictures, padding,
      seek table, cue sheet, application blocks; nor an ID3v2 tag in front);
    - Ogg Vorbis, Opus: the codec header packets but the comment one (identification: rate,
      channels, Opus pre-skip and gain; Vorbis setup), the audio packets with each page's granule
      position and flags, whether each page's CRC is right, other multiplexed streams' pages and
      every byte after the first chain (not page numbers, CRCs nor page boundaries of the headers,
      which a longer comment header changes). Ogg FLAC has no storage (no digest);
    - MP4/M4A: the ``mdat`` atoms, ``mvhd``'s timescale and every ``trak`` (``tkhd``, ``mdhd``,
      ``hdlr``, ``elst``, ``stsd`` with ``esds``, ``stts``, ``stsc``, ``stsz``, ``ctts``, ``sgpd``/``sbgp``,
      ``stco``/``co64`` as offsets into the ``mdat`` they point at), ``mvex`` and ``moof`` (``tfhd``'s
      base offset made relative alike); not ``udta``/``meta`` (tags, iTunSMPB included), padding,
      ``mvhd`` but its timescale, nor the dates in ``tkhd`` and ``mdhd``;
    - WMA (ASF): everything after the header object, each Stream Properties and Extended Stream
      Properties object, the File Properties' preroll, flags and packet sizes (not its file size,
      dates and durations, nor the tag objects, codec list or padding);
    - WAV, AIFF: the ``fmt ``/``COMM`` and ``data``/``SSND`` chunks, each its ID, declared size and
      contents (an audio chunk declaring 0 or 0xFFFFFFFF bytes, a streaming writer's placeholder,
      to the end of the file, as ffmpeg decodes a WAV and libsndfile an AIFF); not ``LIST``, ``ID3 ``
      nor other chunks, nor the RIFF/FORM size; a RIFF/FORM after the file's own (a second file joined
      byte-wise, decoded too: `tagger.audio.joined`) whole;
    - DSF: the ``DSD `` chunk's ID and size, the ``fmt `` and ``data`` chunks (not the file size and
      metadata pointer, nor the ID3v2 tag at the end);
    - WavPack, Monkey's Audio, Musepack, TAK: every byte but the APEv2 tag and an ID3v1 tag after it
      (stream headers included; an ID3v2 tag in front too).
    """
    storage = STORAGES.get(mutagen_type)
    if storage is None:
        return None
    h = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if not storage.payload(f, size, h if progress is None else _Counted(h, progress)):
            return None
    return h.hexdigest()


class _Counted:
    """A hash whose every `update` is also reported to ``progress`` (its length)."""

    def __init__(self, h, progress: Callable[[int], None]) -> None:
        self.h, self.progress = h, progress

    def update(self, data) -> None:
        self.h.update(data)
        self.progress(len(data))
