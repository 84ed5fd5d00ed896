"""The downmix: a block's channels to mono, channels in antiphase inverted and empty ones left out
(`ANTIPHASE`, `EMPTY_CHANNEL_DB`), NaN and infinite samples set to 0 and counted."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _zero_non_finite(mono: np.ndarray) -> int:
    """Set the NaN and infinite samples of `mono` to 0, in place; returns how many there were."""
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(mono.sum())  # a NaN or inf sample makes the sum non-finite: one cheap pass
    if finite:
        return 0
    bad = int(np.count_nonzero(~np.isfinite(mono)))
    np.nan_to_num(mono, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return bad


ANTIPHASE = -0.5
"""A channel whose correlation with the loudest channel over a `_downmix` chunk (1 s) is below this
is averaged with its polarity inverted: channels in antiphase (L = -R: a phase-inverted recording, a
channel wired the wrong way round) cancel in the plain mean, which left a loud file silent (stored
with no instruments) or without what is in the centre (the bass, the voice). Music mixed the
ordinary way correlates above 0."""
EMPTY_CHANNEL_DB = -60.0
"""A channel this far or further below the loudest over a `_downmix` chunk is left out of the mean:
empty channels (the silent surrounds of a 5.1 file, the empty side of a mono transfer stored as
stereo) lowered the level of what the others hold (by 15.6 dB for a 5.1 file of the centre alone),
and quiet passages fell under the silence floor (`constants.SILENCE_DBFS`) that they were above in
the same recording as a mono file. A chunk with neither such channel nor one in antiphase is the
plain mean, bit for bit (past its first `FADE_SECONDS` where the chunk before was mixed otherwise)."""
FADE_SECONDS = 0.01
"""Where a chunk's channels are mixed with other weights than the chunk's before (a channel left out,
inverted, or back), the weights go from the old to the new over this long at its start (a raised
cosine): the switch from one to the other at a second's edge was a click in every window holding it
(a tone on the left, the right empty every other second: the tone stepped by 6 dB within a sample,
from L to (L + R) / 2 and back)."""


@dataclass
class Polarity:
    """The signs [shape=(c,)] the last chunk mixed gave its channels (+1, -1 inverted, 0 left out;
    None: the plain mean's, all +1), carried by `stream` from block to block of a file: a chunk with
    a channel inverted or left out is turned to agree with them (`_mix_unusual_chunks`). `weights`
    [shape=(c,)]: those the last chunk mixed its last frame with (None: nothing to fade from, before
    the first chunk or after digital silence), faded from at the next chunk's start where its own
    differ (`FADE_SECONDS`)."""

    signs: np.ndarray | None = None
    weights: np.ndarray | None = None


def _downmix(block: np.ndarray, *, chunk: int | None = None,
             polarity: Polarity | None = None) -> tuple[np.ndarray, int]:  # fmt: skip
    """Mean of the channels [shape=(m, c)] -> [shape=(m,)] float32, NaN/inf samples set to 0, and
    how many of those there were. In each `chunk` of frames (None: the whole block), a channel in
    antiphase with the loudest one (`ANTIPHASE`) is inverted before the mean, and an empty one
    (`EMPTY_CHANNEL_DB`) left out of it; `polarity` carries the mix's polarity from the block
    before (None: the block is the file's first).

    The same as ``block.mean(axis=1, dtype=np.float32)`` (bit for bit up to 7 channels, within float32
    rounding beyond) but summed column by column: numpy's reduction over a short last axis costs
    about as much as decoding an MP3.
    """
    n = block.shape[1]
    if n == 1:
        mono = np.array(block[:, 0], dtype=np.float32)
        if polarity is not None:  # (nothing mixed to fade from; a joined file's parts all have its first's channels)
            polarity.weights = None
    else:
        with np.errstate(invalid="ignore", over="ignore"):  # (inf + -inf: NaN, counted below)
            mono = np.add(block[:, 0], block[:, 1], dtype=np.float32)
            for c in range(2, n):
                mono += block[:, c]
            mono /= np.float32(n)
            _mix_unusual_chunks(block, mono, chunk or len(block), polarity or Polarity())
    return mono, _zero_non_finite(mono)


def _mix_unusual_chunks(block: np.ndarray, mono: np.ndarray, chunk: int, polarity: Polarity) -> None:
    """Replace, in place, each `chunk` of `mono` (the mean of `block`'s channels) where a channel is in
    antiphase with the loudest one (`ANTIPHASE`) or empty (`EMPTY_CHANNEL_DB`) by the mean of the
    channels not empty, those in antiphase inverted, the whole turned so that most of the channels
    kept keep the polarity they had in the chunk before (`polarity`; the plain mean's before the
    first), the first channel kept its own where as many would turn as not (L = -R: the file is
    heard as its left channel). (The loudest channel's polarity was kept: where L = -R within a
    lossy codec's error, the louder of the two changed from one second to the next, and so did the
    mix's polarity: a step of twice the signal at each such chunk's start, a click in the windows.
    The first channel kept alone turned it over where that channel was left out in some chunks.)
    Where a chunk's weights differ from the chunk's before, they are faded from those over its first
    `FADE_SECONDS` (`_fade_in`; a block's first chunk fades from the last block's, `polarity.weights`).
    A chunk holding NaN or infinite samples keeps the plain mean (`stream` counts them)."""
    empty = 10 ** (EMPTY_CHANNEL_DB / 10)
    plain = np.full(block.shape[1], 1 / block.shape[1], dtype=np.float32)
    fade = max(1, round(FADE_SECONDS * chunk))  # (`chunk`: a second of the file's frames)
    for start in range(0, len(block), max(chunk, 1)):
        x = block[start : start + chunk]
        mixed = polarity.weights if polarity.weights is not None and len(polarity.weights) == len(plain) else None
        power, dots = _channel_stats(x)
        if not np.isfinite(power).all():  # (samples beyond about 1e17 square past float32: in float64)
            power, dots = _channel_stats(x.astype(np.float64))
            if not np.isfinite(power).all():
                polarity.weights = plain
                continue
        loudest = int(np.argmax(power))
        if not power[loudest] > 0:
            polarity.weights = None
            continue
        if dots.ndim == 2:
            dots = dots[:, loudest]
        else:
            dots = x.T.astype(power.dtype, copy=False) @ x[:, loudest].astype(power.dtype)
        flip = dots < ANTIPHASE * np.sqrt(power * power[loudest])
        kept = power > empty * power[loudest]
        if kept.all() and not flip.any():
            polarity.signs = None
            polarity.weights = plain
            if mixed is not None and not np.array_equal(mixed, plain):
                polarity.weights = _fade_in(x, mono, start, mixed, plain, fade)
            continue
        signs = np.where(flip, -1.0, 1.0) * kept
        before = polarity.signs if polarity.signs is not None and len(polarity.signs) == len(signs) else 1.0
        agree = float(np.sum(signs * before))  # (small integers: a tie is exactly 0)
        if agree < 0 or (agree == 0 and signs[np.argmax(kept)] < 0):
            signs = -signs
        polarity.signs = signs
        weights = (signs / kept.sum()).astype(np.float32)
        mono[start : start + len(x)] = x @ weights
        polarity.weights = weights
        if mixed is not None and not np.array_equal(mixed, weights):
            polarity.weights = _fade_in(x, mono, start, mixed, weights, fade)


def _fade_in(x: np.ndarray, mono: np.ndarray, start: int, before: np.ndarray, after: np.ndarray,
             fade: int) -> np.ndarray:  # fmt: skip
    """Mix, in place, the first `fade` frames of the chunk `x` [shape=(m, c)] (at `start` in `mono`)
    with weights [shape=(c,)] going from `before` to `after` along a raised cosine; returns those its
    last frame was mixed with: `after`, or where `x` is shorter than the fade (a block's last chunk)
    those it stopped at, for the next chunk to fade from. (They were `after`: a chunk of 20 frames at
    a block's end, where the right channel came back, left the next block to step from about the old
    mix to the new within a sample, the click the fade is there to remove.)"""
    m = min(fade, len(x))
    ramp = (0.5 - 0.5 * np.cos(np.pi * np.arange(1, m + 1) / (fade + 1))).astype(np.float32)
    weights = before + ramp[:, None] * (after - before)
    mono[start : start + m] = (x[:m] * weights).sum(axis=1, dtype=np.float32)
    return after if m == fade else weights[-1]


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's power [shape=(c,)] in `x` [shape=(m, c)], and its products with every other
    [shape=(c, c)] for up to 8 channels (one BLAS call: a third of the time of the sums), or an empty
    array beyond (then computed for the loudest channel alone)."""
    if x.shape[1] <= 8:
        gram = x.T @ x
        return np.diagonal(gram), gram
    return np.einsum("ic,ic->c", x, x), np.zeros(0)
