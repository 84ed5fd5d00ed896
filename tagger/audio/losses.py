"""The rule for audio a decoder could not give: damaged or missing audio up to `MAX_LOST_SHARE` of
a file's length is a note, more is an error (`_note_or_refuse`); NaN or infinite samples up to
`MAX_NON_FINITE` are silence, more an error, naming the broken channels (`_check_channels`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagger.errors import AudioReadError


MAX_LOST_SHARE = 0.01
"""The largest share of a file's length that ffmpeg may fail to decode (damaged frames it skips)
for the rest to be analysed, with a note saying what was left out (`stream`'s ``notes``): one bad
frame of an AAC file is 23 ms, which no player stops at and no tag depends on. A file with more, or
of unknown length, is an error: its result would leave out too much."""
MAX_NON_FINITE = 0.01
"""The largest share of a file's samples that may be NaN or infinite (a float file's glitches):
they are analysed as silence. A file with more (a float file of garbage, one of NaN only, one of
samples too large to resample) is an error: its silence would be a wrong answer."""


def _note_or_refuse(path: Path, notes: list[str] | None, *, lost: float, duration: float | None, note: str,
                    refusal: str) -> None:  # fmt: skip
    """The rule for audio a decoder could not give (`MAX_LOST_SHARE`): `note` appended to `notes` when
    `lost` seconds are at most that share of the known `duration` and the caller takes notes; else an
    `AudioReadError` of `refusal` (a result would leave too much out, or how much is not known)."""
    if notes is not None and duration and lost <= MAX_LOST_SHARE * duration:
        notes.append(note)
    else:
        raise AudioReadError(path, refusal)


def _places(holds: float, duration: float, lost: float) -> int:
    """The fewest decimals (one to six) that tell ``holds`` seconds from ``duration`` and show the
    ``lost`` seconds as more than none, so that a refusal never says a file holds 3.3 s of the 3.3 s
    its header declares, nor 9.9 s of 10.0 s, leaving 0.0 s out (9.94 of 9.96: 0.02 s)."""
    return next((n for n in range(1, 6) if f"{holds:.{n}f}" != f"{duration:.{n}f}" and float(f"{lost:.{n}f}") > 0), 6)


def _cut_short(path: Path, notes: list[str] | None, *, lost: float, holds: float, duration: float | None) -> None:
    """`_note_or_refuse` for a file that ends before the length its header declares (``duration``
    seconds), holding ``holds`` seconds of it, ``lost`` seconds missing: the one note and refusal of
    every container whose header declares a length (WAV/AIFF, MP3, FLAC, TAK...)."""
    n = _places(holds, duration or 0.0, lost)
    _note_or_refuse(path, notes, lost=lost, duration=duration,
                    note=f"the file ends before the length its header declares: analysed without the rest "
                         f"({lost:.3f} s of {duration or 0.0:.1f} s left out)",
                    refusal=f"cut short: the file holds {holds:.{n}f} s of the {duration or 0.0:.{n}f} s its header "
                            f"declares; nothing stored, as a result would leave {lost:.{n}f} s out")  # fmt: skip


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
