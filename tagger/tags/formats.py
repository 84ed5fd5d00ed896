"""Recognising an audio file's format and loading its tags with mutagen (`open_file`).

Which mutagen class reads a file: mutagen's guess from the name and the first bytes, corrected
where it is wrong or silent (APE-family files, RF64/BW64 WAV, an MP3 without a tag, a damaged file
whose extension names a format tagger writes), an ID3 tag loaded as it is in the file (`_load_id3`),
and the `Storage` that holds tagger's fields in it. Every failure comes out as our own error naming
the file and the reason (`TagWriteError`, `UntaggableError` for a format tagger does not tag);
`UNREADABLE` and `raised_in_mutagen` tell a malformed file from a bug in tagger.

Kept apart from `tagger.tags.rewrite` so that the rewrite reads as its steps: reading a file
(`tagger.tags.rewrite.read_instruments`, `audio_digest`) and checking the written copy both load
it here. Which formats tagger writes, and where its fields live in each, is `tagger.tags.storage`'s
business.
"""

from __future__ import annotations

import errno
import os
import struct

from tagger.errors import EmptyFileError, TaggerError, TagWriteError, UntaggableError
from tagger.tags.storage import STORAGES, ID3Storage, format_named, supported_formats


def open_file(path: str | os.PathLike, *, real: str | None = None, cls: type | None = None, copies: bool = True):
    """Load ``path`` with mutagen -> (file object, its `Storage`); our errors only.

    ``cls``: the mutagen class to use (the original's, for its temporary copy: mutagen guesses a
    file's type partly from its name, and a ``.tagger-tmp`` name says nothing, so an MP3 without an
    ID3 tag, e.g. an 8 kHz MPEG 2.5 one, would not be recognised from the copy). Without ``cls`` the
    type comes from the name and the first bytes, with our own MPEG frame check as a last resort.
    ``copies``: False loads an ID3 tag alone, without the fields a write copies into a new one (an
    MP3's ID3v1 tag, a WAV's LIST/INFO chunk: `_load_id3`; a WavPack's ID3v2 tag in front into its
    APEv2 tag: `Storage.add_copies`), as a written copy is checked.
    """
    import mutagen

    name = real or os.fspath(path)
    try:
        if os.stat(name).st_size == 0:  # (mutagen's words for it name a header or a frame: "Header size < 8")
            raise EmptyFileError(path, "empty file (0 bytes): no audio, no tags; left as it is")
        if cls is None:
            from tagger.tags.storage.apev2 import ape_file_type

            # (mutagen's classes fail on a WavPack rate outside its table, and mutagen takes one of
            # these files behind an ID3v2 tag for an MP3)
            cls = ape_file_type(name)
        variant = None if cls is not None else _wave64(name)
        if variant:  # (mutagen tags only the RIFF WAV's ID3 chunk)
            raise UntaggableError(path, f"unsupported format ({variant} WAV); tagger writes tags into "
                                        f"{supported_formats()}")  # fmt: skip
        other = None if cls is not None else _untagged_magic(name)
        if other:  # (under any name: mutagen would try the format the name says, and fail)
            raise UntaggableError(path, f"unsupported format ({other}); tagger writes tags into {supported_formats()}")
        if cls is None:
            cls = _iff_type(name)  # (mutagen.File would load the tags, cover art included, to be loaded again)
        if cls is None and _is_adts(name):  # (mutagen knows raw AAC by its extension alone)
            from mutagen.aac import AAC

            cls = AAC
        if cls is None:
            audio = mutagen.File(name)
            if audio is None and _looks_like_mpeg(name):
                from mutagen.mp3 import MP3

                try:
                    audio = _load_id3(MP3, name)
                except mutagen.MutagenError:
                    audio = None
            elif audio is not None and _is_id3(type(audio).__name__):
                cls, audio = type(audio), None  # (let the first load go before the second)
            if cls is None and (audio is None or type(audio).__name__ == "APEv2File"):
                # mutagen knows some formats by their first bytes alone: a damaged or unusual file
                # whose name says a format tagger writes is read as that format (an MP4 without an
                # `ftyp` atom is read; a damaged one fails here, a failure, not a format without tags)
                named = _named_type(name)
                if named is not None:
                    cls, audio = named, None
        if cls is not None:
            audio = _load_id3(cls, name, copies=copies) if _is_id3(cls.__name__) else cls(name)
        if copies and audio is not None and type(audio).__name__ in STORAGES:
            STORAGES[type(audio).__name__].add_copies(audio, name)  # (the ID3 containers': `_load_id3`)
    except TaggerError:
        raise
    except FileNotFoundError:
        raise TagWriteError(path, "no such file") from None
    except (mutagen.MutagenError, *UNREADABLE) as exc:
        raise TagWriteError(path, f"cannot read tags: {_unreadable(exc, name)}") from exc
    except Exception as exc:
        if not raised_in_mutagen(exc):
            raise  # a bug in tagger: its own traceback, not the file's fault
        raise TagWriteError(path, f"cannot read tags: mutagen failed on it ({type(exc).__name__}: {exc})") from exc
    if audio is None or type(audio).__name__ not in STORAGES:
        kind = None if audio is None else type(audio).__name__
        if kind == "AC3" and getattr(audio.info, "codec", "") == "ec-3":
            kind = "EAC3"
        what = _unknown_format(name) if kind is None else _UNTAGGED_LABELS.get(kind, kind)
        raise UntaggableError(path, f"unsupported format ({what}); tagger writes tags into {supported_formats()}")
    return audio, STORAGES[type(audio).__name__]


_UNTAGGED_LABELS = {
    "OggFLAC": "Ogg FLAC", "OggTheora": "Ogg Theora video", "OggSpeex": "Ogg Speex", "AAC": "raw AAC (ADTS)",
    "AC3": "AC-3", "EAC3": "E-AC-3", "SMF": "MIDI", "DSDIFF": "DSDIFF (DFF)",
}  # fmt: skip
"""The names for users of formats mutagen reads and tagger does not tag (others: mutagen's class name)."""


def _unknown_format(name: str) -> str:
    """The name of the format of ``name``, which mutagen does not know, by its first bytes or its
    extension (`tagger.audio.formats.FORMAT_MAGICS`, `FORMAT_NAMES`: Shorten, RealAudio...);
    ``unknown`` for any other."""
    from tagger.audio.formats import AUDIO_FORMATS, FORMAT_MAGICS, FORMAT_NAMES

    try:
        with open(name, "rb") as f:
            head = f.read(max(map(len, FORMAT_MAGICS)))
    except OSError:
        head = b""
    demuxer = next((d for magic, d in FORMAT_MAGICS.items() if head.startswith(magic)), None)
    ext = os.path.splitext(name)[1].lower()
    demuxer = demuxer or next((d for d, extensions in AUDIO_FORMATS.items() if ext in extensions), None)
    return FORMAT_NAMES.get(demuxer or "", "unknown")


def _named_type(name: str) -> type | None:
    """The mutagen class of the format tagger writes that the file's extension names, or None."""
    fmt = format_named(name)
    return None if fmt is None else fmt.mutagen_class()


def _unreadable(exc: Exception, name: str) -> str:
    """Why mutagen could not read the file ``name``, in words that name the part of the file at fault."""
    from mutagen.apev2 import APEBadItemError

    if isinstance(exc, APEBadItemError):
        return (f"its APEv2 tag has an item mutagen cannot read (a key that is not ASCII, reserved or not 2 to 255 "
                f"characters long, text that is not UTF-8, or the reserved item type): {exc}")  # fmt: skip
    root = exc  # mutagen wraps its errors in its own, and raises some bare: a read that runs out of bytes
    while root.args and isinstance(root.args[0], BaseException):
        root = root.args[0]
    from tagger.tags.storage.apev2 import ape_tag_damage

    damage = ape_tag_damage(name) or _iff_size_placeholder(name) or _misnamed(name)
    if damage:
        return damage
    if "offset-sized integer" in str(root) or (isinstance(root, OSError) and root.errno == errno.EINVAL):
        # (a seek to an offset beyond 2**63 or before the file's start: ``cannot fit 'int' into an
        # offset-sized integer``, ``[Errno 22] Invalid argument``)
        return f"a size in its headers is too large to be true (damaged?): {root}"
    if isinstance(root, UnicodeDecodeError) and root.encoding == "utf-16-le":
        from tagger.tags.storage.asf import odd_texts

        odd = odd_texts(name)
        if odd:
            return (f"its ASF (WMA) header has texts of an odd number of bytes, which mutagen cannot read (UTF-16 "
                    f"has 2 bytes a character: damaged?): {', '.join(odd)}")  # fmt: skip
    if str(exc):
        return str(exc)
    if type(root) is OSError and not root.args:  # (mutagen's `read_full`)
        return "a part of it runs past the end of the file (as its headers give it: damaged or cut short?)"
    return f"{type(root).__name__} (mutagen gives no reason)"


def _misnamed(name: str) -> str | None:
    """Why a file whose name says one format tagger writes and whose first bytes say another cannot
    be read (an Ogg Vorbis file named ``.flac``, a FLAC named ``.wav``): mutagen picks a format by
    the name before the first bytes, fails on it, and so does every program built on it (beets); None
    where the first bytes say no other format (a damaged file of the named one, an ID3v2 tag in front
    of any)."""
    from mutagen.aac import AAC
    from mutagen.ac3 import AC3
    from mutagen.aiff import AIFF
    from mutagen.apev2 import APEv2File
    from mutagen.asf import ASF
    from mutagen.dsdiff import DSDIFF
    from mutagen.dsf import DSF
    from mutagen.flac import FLAC
    from mutagen.monkeysaudio import MonkeysAudio
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.musepack import Musepack
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggspeex import OggSpeex
    from mutagen.oggtheora import OggTheora
    from mutagen.oggvorbis import OggVorbis
    from mutagen.optimfrog import OptimFROG
    from mutagen.smf import SMF
    from mutagen.tak import TAK
    from mutagen.trueaudio import TrueAudio
    from mutagen.wave import WAVE
    from mutagen.wavpack import WavPack

    from tagger.tags.storage.base import FORMATS

    named = format_named(name)
    try:
        with open(name, "rb") as f:
            header = f.read(128)
            if named is None or header.startswith(b"ID3"):
                return None
            scored = sorted((kind.score("", f, header), kind.__name__) for kind in (
                MP3, TrueAudio, OggTheora, OggSpeex, OggVorbis, OggFLAC, FLAC, AIFF, APEv2File, MP4, WavPack, Musepack,
                MonkeysAudio, OptimFROG, ASF, OggOpus, AAC, AC3, SMF, TAK, DSF, DSDIFF, WAVE))  # fmt: skip
    except Exception:  # (a score that fails on these bytes says nothing)
        return None
    score, kind = scored[-1]
    if score <= 0 or kind == named.mutagen_type:
        return None
    held = FORMATS[kind].label if kind in FORMATS else _UNTAGGED_LABELS.get(kind, kind)
    return (f"its name says {named.label} ({os.path.splitext(name)[1]}) where its first bytes are {held}: mutagen, "
            "and the programs built on it (beets), take the format from the name and cannot read it; rename it "
            "to the extension of its format")


UNREADABLE = (OSError, ValueError, struct.error, EOFError, IndexError, KeyError)
"""What reading a malformed file's tags may raise (besides mutagen's own errors), in mutagen or in
tagger's checks of the bytes: one line naming the file, never a traceback that stops a scan."""


def raised_in_mutagen(exc: BaseException) -> bool:
    """Whether ``exc`` (of a kind not in `UNREADABLE`) was raised in mutagen's code rather than
    tagger's: the last frame of its traceback that is either one's is mutagen's (a TypeError or a
    ZeroDivisionError of mutagen's on a malformed file is the file's; one of tagger's is a bug, which
    must reach the user as a traceback, not as one bad file among others)."""
    import mutagen

    roots = (os.path.dirname(mutagen.__file__) + os.sep, os.path.dirname(os.path.dirname(__file__)) + os.sep)
    last = None
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith(roots):
            last = name
        tb = tb.tb_next
    return last is not None and last.startswith(roots[0])

def _is_id3(type_name: str) -> bool:
    """Whether tagger writes the mutagen file type ``type_name`` as an ID3v2 container (its storage
    an `~tagger.tags.storage.ID3Storage`: MP3, WAV, AIFF, DSF), whose tag `_load_id3` loads as it is
    in the file. Read from the registered storage classes, so a new ID3 container is its class alone:
    with a list of names here, its ID3v2.3 tags were loaded translated to v2.4 and every one holding
    TYER or RVAD was refused ('frames that a rewrite would lose')."""
    return isinstance(STORAGES.get(type_name), ID3Storage)


def _load_id3(cls: type, name: str, *, copies: bool = True):
    """Load the file ``name`` of an ID3 type ``cls`` with its frames as they are in the file:
    mutagen's default load renames and drops frames of other ID3 versions (TYER becomes TDRC, RVAD
    goes), which a save would then write.

    An MP3's ID3v1 tag is folded into the loaded tag only when the file has no ID3v2 tag: the
    ID3v2 tag a write adds then carries its title, artist, album, year, comment, track and genre
    (players and ffmpeg read ID3v1 only where there is no ID3v2 tag, and would show none of them
    any more). Beside an ID3v2 tag it would add frames. The ID3v1 tag itself is kept byte for
    byte (`MP3Storage.save`).

    A WAV file without an ID3 chunk, or with one that holds no frame, is loaded with the fields of
    its ``LIST/INFO`` chunk as ID3 frames (`WAVEStorage.info_frames`), likewise: TagLib shows a WAV's
    ID3 chunk alone once it holds a frame, and would show none of them any more. The LIST/INFO
    chunk itself is kept byte for byte. So is an MP3's APEv2 tag, whose ReplayGain items are
    loaded as ``TXXX`` frames where it has no ID3v2 tag (or an empty one), as TagLib shows them only
    then (`MP3Storage.apev2_frames`), with ``TXXX:INSTRUMENTS_COPIES`` listing them (`MP3Storage.marked_apev2_frames`).
    ``copies`` False: none is loaded (the file's ID3 tag alone, None where it has none).

    A WAV's or an AIFF's ID3 chunk is loaded alone, never with an ID3v1 tag at the end of the file
    (some tools append one after the RIFF/FORM chunk): mutagen would fold its fields into the tag
    where the file has an ID3 chunk (and not where it has none), and a save would write them into
    the chunk, where TagLib and ffmpeg, which read no ID3v1 tag in these files, would show them.
    The ID3v1 bytes stay where they are, after the chunks. So does a DSF's ID3v2 tag (its ID3v1
    tag, after the ID3v2 one, is kept by `DSFStorage.save`)."""
    if cls.__name__ in ("WAVE", "AIFF"):
        audio = cls(name, translate=False, load_v1=False)
        storage = STORAGES[cls.__name__]
        if copies and storage.info_shown(name):  # (TagLib shows a WAV's LIST/INFO fields while its ID3 chunk holds no frame)
            frames, _refused = storage.info_frames(name)  # (refused: `WAVEStorage.cannot_keep`)
            if frames:
                audio.tags = None  # (an ID3 chunk without frames, of any version: a new tag, as where there is none)
                audio.add_tags()
                for frame in frames:
                    audio.tags.add(frame)
        return audio
    if cls.__name__ != "MP3":  # a DSF: its ID3v2 tag alone, as a WAV's (no reader shows an ID3v1 tag after it)
        return cls(name, translate=False, load_v1=False)
    audio = cls(name, translate=False, load_v1=False)
    if not copies or not (audio.tags is None or (not len(audio.tags) and not audio.tags.unknown_frames)):
        return audio
    if audio.tags is None:
        audio = cls(name, translate=False, load_v1=True)  # (tags None again when there is no ID3v1 tag)
    else:  # an ID3v2 tag without frames: players and ffmpeg read the ID3v1 tag, as where there is none
        from mutagen.id3 import ParseID3v1

        with open(name, "rb") as f:
            frames = ParseID3v1(f.read(128)) if f.seek(0, 2) >= 128 and f.seek(-128, 2) >= 0 else None
        if frames:
            audio.tags = None  # (a new tag in place of the empty one)
            audio.add_tags()
            for frame in frames.values():
                audio.tags.add(frame)
    for frame in [] if audio.tags is None else audio.tags.getall("COMM"):
        # mutagen describes the comment "ID3v1 Comment"; readers show the comment without a
        # description as the file's comment (ffmpeg's "comment")
        del audio.tags[frame.HashKey]
        frame.desc = ""
        audio.tags.add(frame)
    replaygain = STORAGES[cls.__name__].marked_apev2_frames(name)  # (TagLib shows the APEv2 tag while there is none)
    if replaygain and audio.tags is None:
        audio.add_tags()
    for frame in replaygain:
        audio.tags.add(frame)
    return audio


def _wave64(name: str) -> str | None:
    """``RF64`` or ``BW64`` for a WAV file of those 64-bit variants (field recorders and DAWs write
    them past 4 GB, some always), which libsndfile decodes and mutagen does not tag; None otherwise."""
    try:
        with open(name, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    return head[:4].decode() if head[:4] in (b"RF64", b"BW64") and head[8:12] == b"WAVE" else None


_UNTAGGED_MAGICS = {b"\x1aE\xdf\xa3": "matroska", b"caff": "caf", b".snd": "au",
                    b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00": "w64"}  # fmt: skip
"""The first bytes of formats tagger analyses that mutagen does not know and hold no tags tagger
writes (`tagger.audio.formats.FORMAT_NAMES` names them): Matroska/WebM, CAF, AU, Wave64."""


def _untagged_magic(name: str) -> str | None:
    """The name of the format of `_UNTAGGED_MAGICS` that the file ``name`` begins with, whatever its
    name says (a WebM saved as ``.m4a``, a Wave64 as ``.wav``: mutagen tried the named format and
    failed, ``not a MP4 file``, a failure on every run), or None."""
    from tagger.audio.formats import FORMAT_NAMES

    try:
        with open(name, "rb") as f:
            head = f.read(max(map(len, _UNTAGGED_MAGICS)))
    except OSError:
        return None
    return next((FORMAT_NAMES[d] for magic, d in _UNTAGGED_MAGICS.items() if head.startswith(magic)), None)


def _iff_size_placeholder(name: str) -> str | None:
    """Why mutagen reads no chunk of the WAV or AIFF file ``name``: its RIFF/FORM size is under 4
    bytes (0: a streaming writer's placeholder, never filled in; libsndfile and ffmpeg read the
    chunks after it all the same); None for another file."""
    try:
        with open(name, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if len(head) < 12 or (head[:4], head[8:12]) not in ((b"RIFF", b"WAVE"), (b"FORM", b"AIFF"), (b"FORM", b"AIFC")):
        return None
    size = int.from_bytes(head[4:8], "little" if head[:4] == b"RIFF" else "big")
    if size >= 4:
        return None
    return (f"its {head[:4].decode()} size is {size} (a streaming writer's placeholder, never filled in?), so mutagen "
            "reads no chunk in it; the audio is analysed as it is, the tags are not written")


def _iff_type(name: str) -> type | None:
    """mutagen's class for a RIFF WAV or an AIFF/AIFF-C file, told from its first 12 bytes (as
    mutagen's guess would tell it, whatever the name); None for another file."""
    try:
        with open(name, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        from mutagen.wave import WAVE

        return WAVE
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        from mutagen.aiff import AIFF

        return AIFF
    return None


def _is_adts(name: str) -> bool:
    """Whether the file is a raw AAC stream (ADTS), after the ID3v2 tags in front of it (radio rips,
    ffmpeg's ``-write_id3v2``): two frame headers back to back, each the sync word and layer 0, which
    no MPEG audio frame has. mutagen takes such a file for raw AAC by its extension alone: behind an
    ID3v2 tag it tried it as an MP3 (``can't sync to MPEG frame``), named ``.m4a`` as an MP4."""
    from tagger.containers import id3v2_length

    try:
        with open(name, "rb") as f:
            pos = 0
            for _ in range(8):
                f.seek(pos)
                skip = id3v2_length(f.read(10))
                if not skip:
                    break
                pos += skip
            for _ in range(2):
                f.seek(pos)
                head = f.read(7)
                if len(head) < 7 or head[0] != 0xFF or head[1] & 0xF6 != 0xF0:
                    return False
                length = (head[3] & 0x03) << 11 | head[4] << 3 | head[5] >> 5
                if length < 7:
                    return False
                pos += length
    except OSError:
        return False
    return True


def _looks_like_mpeg(name: str) -> bool:
    """An ID3v2 tag or an MPEG audio frame header (layer I-III, any MPEG version) at the start."""
    try:
        with open(name, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    if head.startswith(b"ID3"):
        return True
    return len(head) == 4 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0 and head[2] >> 4 != 0xF
