"""Describe an audio file without decoding it (`info`, which returns an `AudioInfo`): the file's
checks (a regular, readable, non-empty file; a sample rate analysed), libsndfile's header, ffprobe
(the demuxers allowed: `tagger.audio.formats`; the signature of a format whose reader does not
check it; what a header declares past the file's end; a Matroska stream's tagged length), an MP4's
atoms (mutagen); and the decoder each file goes to: ffmpeg for a chained Ogg (`tagger.audio.ogg`)
and for an MP3 libsndfile would decode only in part (`tagger.audio.mp3length`), of the length its headers
declare (a Shorten file's: `tagger.audio.lengths`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from tagger.audio.fileinfo import MAX_RATE, MIN_RATE, AudioInfo
from tagger.audio.formats import (AUDIO_DEMUXERS, FORMAT_MAGICS, FORMAT_NAMES, PLAYLIST_FORMATS,
                                  SYNTH_FORMATS)
from tagger.audio.joined import UNSPLIT_KINDS, _joined_parts, joined_said, unsplit_note
from tagger.audio.lengths import _shorten_seconds
from tagger.audio.matroska import _declares_duration
from tagger.audio.mp3 import _mp3_feed
from tagger.audio.mp3length import _mp3_decoded_in_part, _vbri_seconds
from tagger.audio.ogg import _chained_ogg
from tagger.audio.plumbing import (FFMPEG_INPUT_OPTIONS, _DecoderStderr, _said, _unaddressed, opened_name,
                                   run_decoder)  # fmt: skip
from tagger.audio.rawframes import _raw_demuxer, _raw_not_mp3
from tagger.audio.rawheaders import RAW_NAMES
from tagger.audio.rawwalk import _frame_walk
from tagger.containers import id3v2_length
from tagger.errors import AudioReadError, MissingToolError


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioReadError(path, "file not found") from None
    except PermissionError:
        raise AudioReadError(path, "permission denied") from None
    except OSError as exc:
        raise AudioReadError(path, f"cannot stat file: {exc.strerror or exc}") from None
    if not path.is_file():
        raise AudioReadError(path, "not a regular file")
    if st.st_size == 0:
        raise AudioReadError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioReadError(path, "permission denied")


def _check_rate(path: Path, rate: int, decoder: str) -> None:
    top = MAX_RATE if decoder == "soundfile" else 8 * MAX_RATE  # (DSD512 through ffmpeg: 2.8 MHz)
    if not MIN_RATE <= rate <= top:
        raise AudioReadError(path, f"unsupported sample rate {rate} Hz (supported: {MIN_RATE}-{top} Hz)")


UNKNOWN_FRAMES = 2**62
"""libsndfile reports a length it does not know as 2**63 - 1 frames (a FLAC written by a streaming
encoder, whose STREAMINFO says 0 samples), and then fails to read it (``Internal psf_fseek()
failed``): such a file goes to ffmpeg, which decodes it."""


def _soundfile_info(path: Path) -> AudioInfo | None:
    import soundfile as sf

    trap = _DecoderStderr()
    try:
        with trap, sf.SoundFile(os.fsencode(opened_name(path))) as f:  # ('-' is stdin to it; bytes: a name not UTF-8)
            frames = f.frames
            rate = f.samplerate
            if frames >= UNKNOWN_FRAMES:  # (a FLAC of unknown length: libsndfile fails reading it)
                return None
            duration = frames / rate if frames and frames > 0 and rate else None
            return AudioInfo(str(path), f.format, rate, f.channels, duration, "soundfile")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    finally:
        trap.close()


INSTALL_FFMPEG = "install ffmpeg (Debian: apt-get install ffmpeg)"

def _ffprobe_info(path: Path) -> AudioInfo:
    if not ffmpeg_available():
        raise MissingToolError(
            path,
            "libsndfile cannot decode this file and ffmpeg is not installed; "
            f"{INSTALL_FFMPEG} to read M4A/AAC/ALAC, WMA, WavPack, APE and other files libsndfile cannot",
        )
    # (the absolute name: a relative '-' is standard input to ffprobe, as to libsndfile)
    cmd = ["ffprobe", "-v", "error", *FFMPEG_INPUT_OPTIONS, "-print_format", "json", "-show_streams", "-show_format",
           "--", opened_name(path)]  # fmt: skip
    try:
        proc = subprocess.CompletedProcess(cmd, *run_decoder(cmd, timeout=60))
    except subprocess.TimeoutExpired:
        raise AudioReadError(path, "ffprobe timed out reading the file") from None
    if proc.returncode != 0:
        past = _header_past_end(path)
        if past:
            raise AudioReadError(path, f"not a readable audio file: {past}")
        said = _said(proc.stderr.decode("utf-8", "replace"), path).strip().splitlines()  # (a name may hold a line break)
        drm = next((line for line in said if line.startswith("[") and "crypt" in line.lower()), None)
        if drm:  # (Sony's DRM, in an OpenMG file: ffmpeg says why, then just "Operation not permitted")
            reason = _said(_unaddressed(drm), path)
            raise AudioReadError(path, f"encrypted (DRM), which ffmpeg cannot decode ({reason}): not analysed")
        msg = [_said(_unaddressed(line), path) for line in said]
        raw = _no_raw_frames(path)
        if raw:
            raise AudioReadError(path, f"no {raw[1]} audio found in it (no frame of it where it begins; ffmpeg's "
                                       f"{raw[0]} reader, taking it by its name, failed: "
                                       f"{msg[-1] if msg else 'without a reason'}): not a file of that format, or a "
                                       "damaged one; not analysed")  # fmt: skip
        if msg and msg[-1] == "Operation not permitted":  # (AVERROR(EPERM) is -1, a demuxer's error without a name)
            raise AudioReadError(path, "not a readable audio file (ffmpeg failed on it without a reason: 'Operation not "
                                       "permitted' is its code for an error without a name, not the file's "
                                       "permissions; too short, or not of its format?)")  # fmt: skip
        raise AudioReadError(path, f"not a readable audio file ({msg[-1] if msg else 'ffprobe failed'})")
    try:
        meta = json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError:
        raise AudioReadError(path, "ffprobe returned unreadable metadata") from None
    demuxer = str((meta.get("format") or {}).get("format_name") or "")
    if set(demuxer.split(",")) & PLAYLIST_FORMATS:
        raise AudioReadError(path, f"not an audio file but a playlist of other files or streams (ffmpeg's {demuxer} "
                                   "format): not analysed")  # fmt: skip
    synth = next((f for f in demuxer.split(",") if f in SYNTH_FORMATS), None)
    if synth:
        raise AudioReadError(path, f"not an audio file but a script of tones that ffmpeg synthesises (ffmpeg's {synth} "
                                   f"format, {SYNTH_FORMATS[synth]}): not analysed")  # fmt: skip
    if not set(demuxer.split(",")) & AUDIO_DEMUXERS:
        raise AudioReadError(path, f"ffmpeg reads it as {demuxer or 'no format'}, which is not an audio file format "
                                   "tagger analyses: not analysed")  # fmt: skip
    _check_signature(path, demuxer.split(",")[0])
    streams = [s for s in meta.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise AudioReadError(path, "no audio stream in this file")
    s = streams[0]
    try:
        rate = int(s.get("sample_rate") or 0)
        channels = int(s.get("channels") or 0)
    except ValueError:
        raise AudioReadError(path, "invalid sample rate or channel count in the stream") from None
    if rate <= 0 or channels <= 0:  # (a raw stream's demuxer, taken by the file's name, that met no frame)
        codec = s.get("codec_long_name") or s.get("codec_name") or "audio"
        raise AudioReadError(path, f"no {codec} audio found in it (ffmpeg's {demuxer.split(',')[0]} reader met no frame "
                                   "giving a sample rate and channels): not a file of that format, or a damaged one; "
                                   "not analysed")  # fmt: skip
    duration = _seconds(s.get("duration")) or _tagged_duration(s.get("tags") or {})
    others = [t for t in meta.get("streams", []) if t is not s and not (t.get("disposition") or {}).get("attached_pic")]
    if duration is None and not others:  # (the file's length is its stream's; a cover picture has none)
        duration = _seconds(meta.get("format", {}).get("duration"))
    if duration and demuxer.startswith("matroska") and _tagged_duration(s.get("tags") or {}) is None \
            and not _declares_duration(path):
        duration = None  # (ffprobe's estimate from the bit rate, of a live-written file: its clusters tell it)
    start = _seconds(s.get("start_time"))
    if duration and start and demuxer.startswith("matroska") and start < duration and not _own_span(path, s):
        # (a Matroska stream's DURATION tag as ffmpeg's muxer writes it, and the segment's duration,
        # end its timeline, which begins at 0: a video's audio begun 0.5 s in holds 0.5 s less, against
        # which gaps are found)
        duration -= start
    if duration is None and demuxer.split(",")[0] == "shn":
        duration = _shorten_seconds(path)
    return AudioInfo(str(path), str(s.get("codec_name", "unknown")), rate, channels, duration, "ffmpeg",
                     demuxer=demuxer.split(",")[0])  # fmt: skip


def _no_raw_frames(path: Path) -> tuple[str, str] | None:
    """(demuxer, format name) of the raw frame stream (`tagger.audio.rawheaders.RAW_FRAMES`) that the
    file's extension names, where ffprobe failed on it and no frame of it begins where the file does:
    random bytes named ``.loas`` were ``not a readable audio file (Invalid argument)``, where a text
    named ``.ac3`` says that no AC-3 audio was found in it. None for another extension, or a file that
    begins with a frame (the decoder's reason stands)."""
    demuxer = _raw_demuxer(path)
    if demuxer is None or _frame_walk(path, demuxer) is not None:
        return None
    return demuxer, RAW_NAMES[demuxer]


UNCHECKED_SIGNATURES = frozenset({"wsd"})
"""Demuxers of `FORMAT_MAGICS` whose reader, which ffmpeg takes for a file by its name alone, reads
any bytes as its header without looking for its signature: a text file named ``.wsd`` was
``unsupported sample rate 239905901 Hz``. A file of theirs must begin with it (`_check_signature`)."""


def _check_signature(path: Path, demuxer: str) -> None:
    """Raise `AudioReadError` for a file that ffmpeg reads with a demuxer of `UNCHECKED_SIGNATURES`
    and that does not begin with its signature (after an ID3v2 tag, which ffmpeg passes over)."""
    if demuxer not in UNCHECKED_SIGNATURES:
        return
    magics = tuple(magic for magic, d in FORMAT_MAGICS.items() if d == demuxer)
    try:
        with open(path, "rb") as f:
            f.seek(id3v2_length(f.read(10)))
            head = f.read(max(map(len, magics)))
    except OSError:
        return  # (the decoder says why)
    if not head.startswith(magics):
        name = FORMAT_NAMES.get(demuxer, demuxer)
        raise AudioReadError(path, f"not a {name} file: it does not begin with {name}'s signature "
                                   f"({magics[0].rstrip(bytes(1)).decode('latin-1')}), though ffmpeg took it for one "
                                   "by its name: not analysed")  # fmt: skip


_FLAC_BLOCKS = ("STREAMINFO", "PADDING", "APPLICATION", "SEEKTABLE", "VORBIS_COMMENT", "CUESHEET", "PICTURE")


def _header_past_end(path: Path) -> str | None:
    """What at the start of the file declares more bytes than the file holds, where neither
    decoder can read it: an ID3v2 tag (one of 256 MB on a 50 KB MP3, of which ffprobe said
    ``Invalid argument``) or a FLAC metadata block (a PICTURE of 16 MB on an 80 KB FLAC:
    ``Input/output error``); None where nothing does. Reads the headers alone."""
    try:
        with open(path, "rb") as f:
            size, pos = os.fstat(f.fileno()).st_size, 0
            for _ in range(16):  # (ID3v2 tags one after another, as some taggers leave them)
                f.seek(pos)
                length = id3v2_length(f.read(10))
                if not length:
                    break
                if pos + length > size:
                    return (f"its ID3v2 tag declares {length} bytes where the file holds {size - pos} "
                            "(damaged or cut short?)")  # fmt: skip
                pos += length
            f.seek(pos)
            if f.read(4) != b"fLaC":
                return None
            pos += 4
            for _ in range(4096):
                head = f.read(4)
                if len(head) < 4:
                    return None
                kind, length = head[0] & 0x7F, int.from_bytes(head[1:4], "big")
                if pos + 4 + length > size:
                    name = _FLAC_BLOCKS[kind] if kind < len(_FLAC_BLOCKS) else f"type {kind}"
                    return (f"its FLAC {name} metadata block declares {length} bytes where the file holds "
                            f"{size - pos - 4} (damaged or cut short?)")  # fmt: skip
                if head[0] & 0x80:
                    return None
                pos += 4 + length
                f.seek(pos)
    except OSError:
        return None
    return None


def _own_span(path: Path, stream: dict) -> bool:
    """Whether a Matroska stream's length is the span of its own timestamps: its DURATION tag is one of
    mkvmerge's statistics (named in ``_STATISTICS_TAGS``, written by mkvmerge, in a file mkvmerge
    wrote: its WritingApp), the last timestamp's end less the first, where ffmpeg's muxer writes the
    last's end (a stream begun 3 s into a video, 10 s of timeline holding a 2 s gap, is 'DURATION 10 s'
    from mkvmerge: less its start, 7 s, and the gap was not found). ffmpeg remuxing such a file keeps
    its statistics tags but writes its own DURATION and WritingApp ('Lavf...'), whose end less the
    start is the length; so does a file of neither (its statistics from mkvpropedit: a span, read as
    less than it is, which finds fewer gaps but refuses no whole file)."""
    if _seconds(stream.get("duration")) is not None or _tagged_duration(stream.get("tags") or {}) is None:
        return False
    tags = {str(k).upper(): str(v) for k, v in (stream.get("tags") or {}).items()}
    named = next((v for k, v in tags.items() if k.split("-")[0] == "_STATISTICS_TAGS"), "")
    app = next((v for k, v in tags.items() if k.split("-")[0] == "_STATISTICS_WRITING_APP"), "")
    if "DURATION" not in named.upper().split() or not app.lower().startswith("mkvmerge"):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)  # (the segment's Info, after its SeekHead and a Void: 4 KiB in for mkvmerge)
    except OSError:
        return False
    # (WritingApp, 0x5741, its size a 1- or 2-byte EBML number, then the text)
    return re.search(rb"\x57\x41(?:[\x80-\xff]|[\x40-\x7f][\x00-\xff])mkvmerge", head) is not None


def _tagged_duration(tags: dict) -> float | None:
    """A Matroska stream's length from its tags: ``DURATION`` as ffmpeg's muxer writes it, or with a
    language as mkvmerge writes it (``DURATION-eng``), in any case; None when none holds one."""
    for key, value in tags.items():
        name = str(key).upper()
        if name == "DURATION" or name.startswith("DURATION-"):
            seconds = _seconds(value)
            if seconds is not None:
                return seconds
    return None


def _seconds(value) -> float | None:
    """Seconds from ffprobe: a number (``"6.000000"``) or, in a Matroska stream's tags, a clock
    (``"00:00:06.000000000"``); None for none or nonsense (``"N/A"``)."""
    try:
        if isinstance(value, str) and value.count(":") == 2:
            h, m, sec = value.split(":")
            value = int(h) * 3600 + int(m) * 60 + float(sec)
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 and seconds == seconds and seconds != float("inf") else None


MP4_CODECS = {"mp4a.40.2": "aac", "alac": "alac"}
"""MP4 audio codecs described from the container (mutagen) instead of by ffprobe: AAC-LC and ALAC."""
MP4_MIN_RATE = 32000
"""Below this, AAC may carry implicit SBR (the decoder doubles the rate the container declares)."""


def _mp4_info(path: Path) -> AudioInfo | None:
    """An M4A/MP4 file's AAC-LC or ALAC track described from its atoms (mutagen, under a
    millisecond) instead of an ffprobe process (about 100 ms a file, as much as decoding a third of
    a 30 s track); None for anything else, which ffprobe then describes. The decoder is told the
    rate (``-ar``), so what it outputs always matches."""
    if path.suffix.lower() not in (".m4a", ".mp4", ".m4b"):
        return None
    try:
        from mutagen.mp4 import MP4

        st = MP4(str(path)).info
        codec = MP4_CODECS.get(str(getattr(st, "codec", "")))
        # HE-AAC (v2: +PS) signalled in the esds: mutagen names it mp4a.40.2, its core's type, and
        # ffmpeg decodes a mono core as stereo, which the core's configuration (1) does not say
        he_aac = "+SBR" in str(getattr(st, "codec_description", "") or "")
        rate, channels, length = int(st.sample_rate or 0), int(st.channels or 0), float(st.length or 0.0)
    except Exception:  # noqa: BLE001  (anything mutagen cannot read: ffprobe decides)
        return None
    if codec is None or he_aac:
        return None
    if codec == "aac":  # (mutagen gives a mono track the sample entry's count: 2, as ffmpeg writes it)
        channels = _aac_channels(path) or channels
    if rate < MP4_MIN_RATE or not 0 < channels <= 8 or length <= 0:
        return None
    return AudioInfo(str(path), codec, rate, channels, length, "ffmpeg", demuxer="mov")


def _aac_channels(path: Path) -> int | None:
    """The channel count of an MP4's AAC track as its AudioSpecificConfig declares it (its
    channelConfiguration, in the esds of the first sound track's first sample entry, where mutagen
    reads it). mutagen takes that count only where it is sure of it, and not configuration 1 (a mono
    track, which implicit parametric stereo could make stereo; it cannot without implicit SBR, which
    is below `MP4_MIN_RATE`, where ffprobe decides): it gives the sample entry's count instead, which
    ffmpeg always writes as 2. None where the configuration declares no count (0: a program config
    element, whose count mutagen reads; reserved values) or the atoms cannot be read."""
    from mutagen.mp4 import Atoms

    try:
        with open(path, "rb") as f:
            atoms = Atoms(f)
            for trak in atoms[b"moov"].findall(b"trak"):
                ok, data = trak[b"mdia", b"hdlr"].read(f)
                if ok and data[8:12] == b"soun":
                    break
            else:
                return None
            ok, stsd = trak[b"mdia", b"minf", b"stbl", b"stsd"].read(f)
    except Exception:  # noqa: BLE001  (atoms mutagen cannot read: the count it gave stands)
        return None
    # stsd: version and flags, the entry count; the sample entry: its size and type, 28 bytes of
    # AudioSampleEntry; then its esds atom: size, type, version and flags, its descriptors
    entry = stsd[8:] if ok else b""
    esds = entry[36:]
    if entry[4:8] != b"mp4a" or esds[4:8] != b"esds":
        return None
    pos = 12

    def descriptor(tag: int) -> int:
        """The length of the descriptor of `tag` at `pos` (moved past its tag and length)."""
        nonlocal pos
        if esds[pos] != tag:
            raise ValueError("not the descriptor expected")
        length, pos = 0, pos + 1
        for _ in range(4):
            byte, pos = esds[pos], pos + 1
            length = length << 7 | byte & 0x7F
            if not byte & 0x80:
                break
        return length

    try:
        descriptor(0x03)  # ES_Descriptor: its ES_ID, flags and what they announce
        flags, pos = esds[pos + 2], pos + 3
        pos += 2 if flags & 0x80 else 0  # (dependsOn_ES_ID)
        pos += 1 + esds[pos] if flags & 0x40 else 0  # (a URL: its length, then it)
        pos += 2 if flags & 0x20 else 0  # (OCR_ES_Id)
        descriptor(0x04)  # DecoderConfigDescriptor: 13 bytes before its DecoderSpecificInfo
        pos += 13
        descriptor(0x05)  # DecoderSpecificInfo: the AudioSpecificConfig
        bits = int.from_bytes(esds[pos : pos + 8].ljust(8, b"\0"), "big")
    except (IndexError, ValueError):
        return None
    at = 64 - 5
    if bits >> at & 0x1F == 31:  # (an audio object type past 30: 6 bits more)
        at -= 6
    at -= 4
    if bits >> at & 0xF == 15:  # (a sampling frequency written out: 24 bits)
        at -= 24
    config = bits >> (at - 4) & 0xF
    return config if 1 <= config <= 6 else 8 if config == 7 else None


OGG_CODEC_NAMES = {"vorbis": "Vorbis", "opus": "Opus", "flac": "FLAC", "speex": "Speex"}
"""The codecs of an Ogg stream (`tagger.audio.ogg._ogg_codec`) as an error names them."""


def info(path: str | os.PathLike) -> AudioInfo:
    """Describe an audio file without decoding it; raises `AudioReadError`."""
    p = Path(path)
    _check_file(p)
    meta = _soundfile_info(p)
    # A chained Ogg and a VBR MP3 without a length header are decoded whole by ffmpeg only: without
    # it (not on $PATH), libsndfile gave the first stream, or the first 24 s of a 60 s MP3, stored
    # as the whole track (a wrong answer); they are the machine's error now, retried by the next scan.
    chain = _chained_ogg(p) if meta is not None and meta.format == "OGG" else ()
    if chain:
        if not ffmpeg_available():
            raise MissingToolError(p, "a chained Ogg file (streams one after another): libsndfile decodes only the "
                                      f"first, and ffmpeg, which decodes them all, is not installed; {INSTALL_FFMPEG}")  # fmt: skip
        # Decoded whole by ffmpeg, not its first stream alone; ffprobe gives the length of its last
        # stream, not of the whole: unknown.
        meta = replace(_ffprobe_info(p), duration=None)
        kinds = list(dict.fromkeys(chain))
        if len(kinds) > 1:  # (ffmpeg 5.1 decoded a Vorbis then Opus file's first 3 s of 6, without a word)
            names = ", then ".join(OGG_CODEC_NAMES.get(k, k) for k in kinds)
            raise AudioReadError(p, f"a chained Ogg file of streams of different codecs ({names}): ffmpeg stops "
                                    "where the codec changes, and libsndfile decodes the first stream alone; not "
                                    "analysed, as a result would leave the others out")  # fmt: skip
    raw = _raw_not_mp3(p) if meta is not None and meta.format == "MP3" else None
    if raw:
        if not ffmpeg_available():
            raise MissingToolError(p, f"a {RAW_NAMES[raw]} file that libsndfile takes for an MP3 (its first frame "
                                      "damaged): it would decode the file only in part, and ffmpeg, which reads it, "
                                      f"is not installed; {INSTALL_FFMPEG}")  # fmt: skip
        # Its frames to ffmpeg: libsndfile decoded 0.02 s of a 6 s raw AAC whose first frame's layer bits
        # are damaged, of the MP3 frame it read there, stored as the track without a word
        meta = _ffprobe_info(p)
        if meta.demuxer != raw:
            raise AudioReadError(p, f"a damaged {RAW_NAMES[raw]} file (its frames from its start, but libsndfile "
                                    f"reads an MP3 frame there and ffmpeg reads it as {meta.demuxer}): not analysed")  # fmt: skip
    why = _mp3_decoded_in_part(p) if meta is not None and meta.format == "MP3" else None
    if why:
        if not ffmpeg_available():
            raise MissingToolError(p, f"{why}: libsndfile decodes only a part of it, and ffmpeg, which decodes it "
                                      f"whole, is not installed; {INSTALL_FFMPEG}")  # fmt: skip
        # Decoded to its end, of a length not known; without the tags between its parts, which
        # ffmpeg decodes as frames it cannot ("Header missing", a frame lost, more for a cover).
        meta = replace(meta, decoder="ffmpeg", duration=None, feed=_mp3_feed(p), demuxer="mp3")
    vbri = _vbri_seconds(p) if meta is not None and meta.format == "MP3" and meta.decoder == "soundfile" else None
    if vbri:
        if not ffmpeg_available():
            raise MissingToolError(p, "an MP3 with a VBRI header (Fraunhofer's encoders), which libsndfile does not "
                                      "read: it would decode the file only in part, and ffmpeg, which reads it, is "
                                      f"not installed; {INSTALL_FFMPEG}")  # fmt: skip
        # libsndfile takes the length from the first frame's bit rate and stops there (1.4 s of
        # 10 s) or declares more than there is (14.1 s, the file then refused as cut short): ffmpeg
        # decodes it, of the length its VBRI header declares (against which a cut is found).
        meta = replace(meta, decoder="ffmpeg", duration=vbri, feed=_mp3_feed(p), demuxer="mp3")
    parts = _joined_parts(p)
    if parts:
        meta = _joined_info(p, meta, parts)
    meta = meta or (_mp4_info(p) if ffmpeg_available() else None) or _ffprobe_info(p)
    _check_rate(p, meta.sample_rate, meta.decoder)
    return meta


def _joined_info(path: Path, meta: AudioInfo | None, parts: tuple) -> AudioInfo:
    """The `AudioInfo` of a file of streams joined byte-wise (`_joined_parts`): decoded by ffmpeg
    part by part, at the first part's rate and channels (ffmpeg converts the others), of the length
    the parts declare together (unknown where one declares none). libsndfile and ffmpeg decoded the
    first part alone without a word (a FLAC, WAV, WavPack or TTA of 3 s and 5 s joined analysed and
    stored as a 3 s track). A file with a part of a kind not decoded part by part (`UNSPLIT_KINDS`:
    Monkey's Audio) is described as its first part, and says that it holds the others (`AudioInfo.said`)."""
    if any(part.kind in UNSPLIT_KINDS for part in parts):
        return replace(meta or _ffprobe_info(path), said=unsplit_note(parts))
    lengths = [part.seconds for part in parts]
    said = " + ".join(f"{s:.1f} s" if s is not None else "? s" for s in lengths[:6])
    said += " + ..." if len(parts) > 6 else ""
    if not ffmpeg_available():
        raise MissingToolError(path, f"{joined_said(parts)} ({said}): libsndfile or ffmpeg decodes only the first, "
                                     f"and ffmpeg, which decodes each, is not installed; {INSTALL_FFMPEG}")  # fmt: skip
    meta = meta or _ffprobe_info(path)
    total = sum(lengths) if all(s is not None for s in lengths) else None  # type: ignore[misc]
    return replace(meta, decoder="ffmpeg", demuxer=parts[0].demuxer, duration=total, parts=parts, feed=())
