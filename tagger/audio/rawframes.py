"""The raw frame streams read from their frame headers (`_frame_walk`): AAC in ADTS, AC-3 and E-AC-3,
TrueHD and MLP, LOAS (LATM AAC), DTS and DTS-HD. A raw stream declares no length, but each frame's sync header
declares the frame's size: a file that ends before its last frame does (a copy or download that
stopped) is cut short (`_check_raw_end`), and bytes between frames that begin none (lost sync) are
frames lost from its middle (`_check_raw_damage`). ffmpeg said nothing of either (an AC-3 or TrueHD
cut anywhere was stored as a whole track), or refused a LOAS file cut by its last 200 bytes, its
length unknown.

The frame headers of each kind are read in `tagger.audio.rawheaders`, a file's frames walked in
`tagger.audio.rawwalk`; here, what the probe asks of a raw stream (`_raw_demuxer`, `_raw_not_mp3`)
and the checks after decoding."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tagger.audio.fileinfo import AudioInfo
from tagger.audio.formats import AUDIO_FORMATS
from tagger.audio.losses import _cut_short, _note_or_refuse, _places
from tagger.audio.mp3 import _mp3_layout
from tagger.audio.rawheaders import RAW_FRAMES
from tagger.audio.rawwalk import FrameWalk, _frame_walk


def _raw_demuxer(path: Path) -> str | None:
    """The demuxer of `RAW_FRAMES` whose extensions (`AUDIO_FORMATS`) hold the file's; None for another."""
    return next((d for d, exts in AUDIO_FORMATS.items() if path.suffix.lower() in exts and d in RAW_FRAMES), None)


def _raw_not_mp3(path: Path) -> str | None:
    """The ffmpeg demuxer of the raw frame stream (`RAW_FRAMES`) that the name of a file libsndfile
    takes for an MP3 names, where that stream's frames, walked from its start (`_frame_walk`), cover
    more of it than MPEG layer III (or II) frames followed from the first do (`_mp3_layout`): a raw AAC
    (ADTS) whose first frame's layer bits are damaged begins with an MP3 frame's header for
    libsndfile, which decoded 0.02 s of its 6 s and stopped, without a word. None where the name
    names no raw stream or the MP3's frames cover more (an MP3 named ``.aac``)."""
    demuxer = _raw_demuxer(path)
    walk = _frame_walk(path, demuxer) if demuxer else None
    if walk is None:
        return None
    layout = _mp3_layout(path)
    mp3 = 0 if layout is None else layout.walked - sum(b - a for a, b in layout.between)
    raw = walk.end - walk.damaged - sum(b - a for a, b in walk.tags)
    return demuxer if raw > mp3 else None


def _check_raw_end(path: Path, meta: AudioInfo, notes: list[str] | None) -> tuple[AudioInfo, FrameWalk | None]:
    """A raw frame stream (`RAW_FRAMES`) that ends inside its last frame (a copy or download that
    stopped) comes under `_note_or_refuse`'s rule, the frame's seconds lost against the length of
    its frames (a DTS-HD file's against its STRMDATA chunk's: `_cut_short`); the decoder is then
    given its whole frames alone (`AudioInfo.feed`), and says nothing of the cut one. ffmpeg had
    decoded an AC-3's cut frame as a frame, dropped a TrueHD's, each without a word, and refused a
    LOAS file for it (``corrupt audio: ffmpeg could not decode 1 of its frames``). Returns `meta` to
    decode with (of the frames' length, not ffprobe's estimate) and the walk, for `_check_raw_damage`."""
    if meta.decoder != "ffmpeg" or meta.feed or meta.demuxer not in RAW_FRAMES:
        return meta, None
    walk = _frame_walk(path, meta.demuxer)
    if walk is None:
        return meta, None
    total = walk.total
    meta = replace(meta, duration=total)  # (not ffprobe's, of the first frames' bit rate, or none)
    if walk.trailing:  # (the decoder, given them, said it could not decode a frame: 0.0 s of 2.0 s lost)
        lost = walk.trailing_seconds
        last = "its last byte begins" if walk.trailing == 1 else f"its last {walk.trailing} bytes begin"
        _note_or_refuse(path, notes, lost=lost, duration=total,
                        note=f"{last} no {walk.codec} frame (a damaged end, or the zeros of a copy or download that "
                             f"stopped): analysed without {_them(walk.trailing)} ({_about(lost, total, note=True)} left out)",
                        refusal=f"corrupt audio: {last} no {walk.codec} frame (a damaged end, or the zeros of a copy or "
                                f"download that stopped); nothing stored, as a result would leave "
                                f"{_about(lost, total, note=False)} out")  # fmt: skip
        return replace(meta, feed=walk.feed), walk
    if not walk.cut:
        # (the tags or padding after its frames not given to the decoder either: an AC-3's ID3v1 tag was
        # 'ffmpeg could not decode 1 of its frames', a note on a whole file, an error for a caller without notes)
        return (replace(meta, feed=walk.feed) if walk.end < path.stat().st_size or walk.tags else meta), walk
    there, declared = walk.cut_bytes
    if not there:  # (its STRMDATA chunk declares more than the file holds)
        _cut_short(path, notes, lost=walk.cut, holds=total - walk.cut, duration=total, whole=False)
    else:
        what = (f"{there} of the {declared} bytes its header declares there" if declared else
                f"inside its header, {_count(there, 'byte')} of it there")  # fmt: skip
        _note_or_refuse(path, notes, lost=walk.cut, duration=total,
                        note=f"its last {walk.codec} frame is cut ({what}: a copy or download that stopped, of which "
                             f"more may be missing, as a raw stream declares no length): analysed without it "
                             f"({walk.cut:.3f} s of {total:.1f} s left out)",
                        refusal=f"cut short: its last {walk.codec} frame is cut ({what}: a copy or download that "
                                f"stopped?); nothing stored, as a result would leave {walk.cut:.3f} s of the "
                                f"{total:.2f} s its frames hold out")  # fmt: skip
    return replace(meta, feed=walk.feed), walk


def _check_raw_damage(path: Path, walk: FrameWalk | None, notes: list[str] | None, noted: int, decoded: float) -> None:
    """Bytes between a raw stream's frames that begin none (a damaged copy: frames lost from its
    middle, which ffmpeg passes over to the next sync, mostly without a word: a TrueHD with 100 KB
    of its middle overwritten was analysed as if whole) under `_note_or_refuse`'s rule; unless the
    decoder said something of them already (more `notes` than `noted`). What is lost: their audio at
    the stream's bytes a second, or what the decoder gave less than the whole frames hold
    (`decoded` seconds), where more (a TrueHD decoder waits for the next major sync)."""
    if walk is None or not walk.damaged or len(notes or ()) > noted:
        return
    lost = max(walk.damaged_seconds, walk.seconds - decoded)
    total = max(walk.total, decoded + lost)
    bytes_ = f"{_count(walk.damaged, 'byte')} between its {walk.codec} frames {'begins' if walk.damaged == 1 else 'begin'}"
    _note_or_refuse(path, notes, lost=lost, duration=total,
                    note=f"{bytes_} no frame (damaged: frames lost from its middle): analysed without "
                         f"{_them(walk.damaged)} ({_about(lost, total, note=True)} left out)",
                    refusal=f"corrupt audio: {bytes_} no frame (damaged: frames lost from its middle); nothing stored, "
                            f"as a result would leave {_about(lost, total, note=False)} out")  # fmt: skip


def _count(n: int, what: str) -> str:
    """``1 byte``, ``2 bytes``."""
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _them(n: int) -> str:
    return "it" if n == 1 else "them"


def _about(lost: float, total: float, *, note: bool) -> str:
    """``about 0.021 s of 6.0 s``: the seconds lost of a stream's ``total``, shown as more than none
    (one damaged byte was ``about 0.000 s``): a note's in three decimals or more, of the total in one;
    a refusal's both in the fewest that tell what is left from the total (`_places`: ``3.6 s of 6.0 s``)."""
    if note:
        n = next((n for n in range(3, 9) if float(f"{lost:.{n}f}") > 0), 9)
        return f"about {lost:.{n}f} s of {total:.1f} s"
    n = _places(total - lost, total, lost)
    return f"about {lost:.{n}f} s of {total:.{n}f} s"
