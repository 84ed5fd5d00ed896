"""The rule for audio a decoder could not give: damaged or missing audio up to `MAX_LOST_SHARE` of
a file's length is a note, more is an error (`_note_or_refuse`); NaN or infinite samples up to
`MAX_NON_FINITE` are silence, more an error, naming the broken channels (`_check_channels`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagger.errors import AudioReadError


MAX_LOST_SHARE = 0.01
"""The largest share of a file's length that ffmpeg may fail to decode (damaged frames it skips;
all that one decode lost, together: `_check_lost_total`) for the rest to be analysed, with a note
saying what was left out (`stream`'s ``notes``): one bad frame of an AAC file is 23 ms, which no
player stops at and no tag depends on. A file with more, or of unknown length, is an error: its
result would leave out too much."""
MAX_NON_FINITE = 0.01
"""The largest share of a file's samples that may be NaN or infinite (a float file's glitches):
they are analysed as silence. A file with more (a float file of garbage, one of NaN only, one of
samples too large to resample) is an error: its silence would be a wrong answer."""


class LostNote(str):
    """A note of `_note_or_refuse` (its words, as the caller reads them), with the seconds it says were
    left out (`lost`) of the file's `duration`, for `_check_lost_total` to add up. `whole`: measured as
    the length less what the decoder gave, which holds every other loss of the decode (ffmpeg's
    frames it could not decode, a header's length not reached); else a part of the file of its own
    (a cut last frame or page, damaged bytes between frames, bytes after them)."""

    def __new__(cls, text: str, lost: float = 0.0, duration: float = 0.0, whole: bool = False) -> LostNote:
        self = super().__new__(cls, text)
        self.lost, self.duration, self.whole = lost, duration, whole
        return self


def _note_or_refuse(path: Path, notes: list[str] | None, *, lost: float, duration: float | None, note: str,
                    refusal: str, whole: bool = False) -> None:  # fmt: skip
    """The rule for audio a decoder could not give (`MAX_LOST_SHARE`): `note` appended to `notes` when
    `lost` seconds are at most that share of the known `duration` and the caller takes notes; else an
    `AudioReadError` of `refusal` (a result would leave too much out, or how much is not known). The
    losses of one decode are then held to the rule together (`_check_lost_total`); `whole`: see
    `LostNote`."""
    if notes is not None and duration and lost <= MAX_LOST_SHARE * duration:
        notes.append(LostNote(note, lost, duration, whole))
    else:
        raise AudioReadError(path, refusal)


def _check_lost_total(path: Path, notes: list[str] | None, noted: int) -> None:
    """`MAX_LOST_SHARE` over all that one decode lost (the `LostNote`s past the first `noted` of
    `notes`), each loss having been held to it alone: a TrueHD that lost 0.038 s to damage in its
    middle and 0.034 s to bytes after its last frame, 1.2% of its 6 s, was analysed with the two
    notes. The losses of parts of their own are added up; one measured as the length less what was
    decoded holds the others (the larger is taken). More than the share: an `AudioReadError` giving
    each note's words."""
    ours = [n for n in (notes or ())[noted:] if isinstance(n, LostNote)]
    if len(ours) < 2:
        return
    lost = max(max((n.lost for n in ours if n.whole), default=0.0), sum(n.lost for n in ours if not n.whole))
    duration = max(n.duration for n in ours)
    if lost <= MAX_LOST_SHARE * duration:
        return
    n = _places(duration - lost, duration, lost)
    raise AudioReadError(path, f"corrupt audio: {len(ours)} losses, each under {MAX_LOST_SHARE:.0%} of it alone "
                               f"({'; '.join(ours)}); nothing stored, as together a result would leave about "
                               f"{lost:.{n}f} s of {duration:.{n}f} s out")  # fmt: skip


def _places(holds: float, duration: float, lost: float) -> int:
    """The fewest decimals (one to six) that tell ``holds`` seconds from ``duration`` and show the
    ``lost`` seconds as more than none, so that a refusal never says a file holds 3.3 s of the 3.3 s
    its header declares, nor 9.9 s of 10.0 s, leaving 0.0 s out (9.94 of 9.96: 0.02 s)."""
    return next((n for n in range(1, 6) if f"{holds:.{n}f}" != f"{duration:.{n}f}" and float(f"{lost:.{n}f}") > 0), 6)


def _seconds_of(lost: float, duration: float) -> str:
    """``lost`` seconds of ``duration`` as a refusal writes them, with `_places`' decimals: a 0.064 s
    loss of a 6.0 s file is '0.06 s of 6.03 s', not '0.1 s of 6.0 s'."""
    lost = max(lost, 0.0)
    n = _places(duration - lost, duration, lost) if lost > 0 else 1
    return f"{lost:.{n}f} s of {duration:.{n}f} s"


def _cut_short(path: Path, notes: list[str] | None, *, lost: float, holds: float, duration: float | None,
               whole: bool = True) -> None:  # fmt: skip
    """`_note_or_refuse` for a file that ends before the length its header declares (``duration``
    seconds), holding ``holds`` seconds of it, ``lost`` seconds missing: the one note and refusal of
    every container whose header declares a length (WAV/AIFF, MP3, FLAC, TAK...). `whole`: see
    `LostNote` (a DTS-HD's STRMDATA chunk's rest is a part of its own)."""
    n = _places(holds, duration or 0.0, lost)
    _note_or_refuse(path, notes, lost=lost, duration=duration,
                    note=f"the file ends before the length its header declares: analysed without the rest "
                         f"({lost:.3f} s of {duration or 0.0:.1f} s left out)",
                    refusal=f"cut short: the file holds {holds:.{n}f} s of the {duration or 0.0:.{n}f} s its header "
                            f"declares; nothing stored, as a result would leave {lost:.{n}f} s out", whole=whole)  # fmt: skip


def _check_channels(path: Path, shares: np.ndarray) -> None:
    """Raise the error naming the channels of a multichannel file with more than `MAX_NON_FINITE` of
    NaN or infinite samples, `shares` [shape=(channels,)] being each channel's share, when some of
    its channels are fine. The file is not analysed from those: what is panned to a broken channel
    would be missing from the result, a wrong answer. (All channels broken: `stream`'s error.)"""
    broken = [i for i, share in enumerate(shares) if share > MAX_NON_FINITE]
    if not broken or len(broken) == len(shares):
        return

    def listed(items: list[str]) -> str:
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"

    names, percent = listed([str(i + 1) for i in broken]), listed([f"{shares[i]:.1%}" for i in broken])
    which = f"channel {names} of {len(shares)} is" if len(broken) == 1 else f"channels {names} of {len(shares)} are"
    raise AudioReadError(path, f"{which} NaN or infinite ({percent} of {'its' if len(broken) == 1 else 'their'} "
                               "samples): not analysed, as the other channels alone could miss instruments (up to "
                               f"{MAX_NON_FINITE:.0%} of a file's samples are taken as silence)")  # fmt: skip
