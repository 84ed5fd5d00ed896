"""Timbre augmentation of training examples (`SynthSettings.morph_prob`, `warp_prob`): an instrument's
part with its spectral envelope moved part of the way towards that of another instrument of its
family (envelope morphing) and/or stretched along the frequency axis without changing its pitch (a
larger or smaller body), making instruments no source holds out of those the pool has."""

from __future__ import annotations

import numpy as np

from tagger import constants as C
from tagger.model.pool import NotePool
from tagger.model.settings import SynthSettings

L = C.WINDOW_SAMPLES
SR = C.SAMPLE_RATE

_BAND_EDGES = 30.0 * 2.0 ** (np.arange(0, 8.4, 1 / 3))
"""Third-octave bands from 30 Hz to 8 kHz: the resolution of a spectral envelope."""
_BAND_CENTRES = np.log2(np.sqrt(_BAND_EDGES[:-1] * _BAND_EDGES[1:]))
_RFFT_LOG2F = np.log2(np.maximum(np.fft.rfftfreq(L, 1 / SR), 1.0))
_RFFT_BAND = np.clip(np.searchsorted(_BAND_EDGES, np.fft.rfftfreq(L, 1 / SR)) - 1, -1, len(_BAND_EDGES) - 1)
MAX_TIMBRE_DB = 20.0
"""Largest boost or cut a timbre filter applies at any frequency."""


def spectral_envelope(spectrum: np.ndarray) -> np.ndarray:
    """The upper spectral envelope [shape=(bands,), dB] of an rfft `spectrum` of L samples, in
    third-octave bands: the strongest bin of each band, then the strongest of each band and its
    neighbours (so that the gaps between the partials of a low note do not read as valleys).

    Bands more than 80 dB under the loudest are floored there.
    """
    power = np.abs(spectrum) ** 2
    inside = (_RFFT_BAND >= 0) & (_RFFT_BAND < len(_BAND_CENTRES))
    peak = np.zeros(len(_BAND_CENTRES))
    np.maximum.at(peak, _RFFT_BAND[inside], power[inside])
    db = 10 * np.log10(np.maximum(peak, 1e-20))
    db = np.maximum(db, db.max() - 80.0)
    padded = np.pad(db, 1, mode="edge")
    return np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])


def timbre_filter(env_from: np.ndarray, env_to: np.ndarray | None, *, amount: float, warp: float) -> np.ndarray:
    """Amplitude gains [shape=(L // 2 + 1,)] that move a sound of envelope `env_from` `amount` of the way
    towards `env_to` (None: no morph), then stretch that envelope by the frequency ratio `warp`.

    The gain is the ratio of target to source envelope at each frequency, limited to +-MAX_TIMBRE_DB;
    the pitch of the sound is untouched (only the envelope moves).
    """
    target = env_from if env_to is None else env_from + amount * (env_to - env_from)
    # the target envelope stretched by `warp`: its value at f is the unstretched value at f / warp
    target_at = np.interp(_RFFT_LOG2F - np.log2(warp), _BAND_CENTRES, target)
    source_at = np.interp(_RFFT_LOG2F, _BAND_CENTRES, env_from)
    gain_db = np.clip(target_at - source_at, -MAX_TIMBRE_DB, MAX_TIMBRE_DB)
    return (10.0 ** (gain_db / 20.0)).astype(np.float32)


class _Envelopes:
    """Spectral envelope of each pool instrument (mean power over a few of its notes), computed once."""

    def __init__(self, pool: NotePool, notes: int = 6):
        self.pool, self.notes, self.cache = pool, notes, {}

    def of(self, inst: int) -> np.ndarray:
        if inst not in self.cache:
            idx = self.pool.by_instrument[inst]
            pick = idx[np.linspace(0, len(idx) - 1, min(self.notes, len(idx))).astype(int)]
            power = np.mean([np.abs(np.fft.rfft(self.pool.clip(int(i)))) ** 2 for i in pick], axis=0)
            self.cache[inst] = spectral_envelope(np.sqrt(power))
        return self.cache[inst]


def _timbre(entry: np.ndarray, pool: NotePool, inst: int, family: int, rng, settings: SynthSettings,
            envelopes: _Envelopes) -> np.ndarray:  # fmt: skip
    """The entry (one instrument's part) with its timbre morphed and/or warped, as the settings draw."""
    others = pool.family_instruments[family]
    morph = len(others) > 1 and rng.random() < settings.morph_prob
    warp = rng.random() < settings.warp_prob
    if not (morph or warp):
        return entry
    spectrum = np.fft.rfft(entry)
    env_from = spectral_envelope(spectrum)
    env_to = None
    if morph:
        other = int(rng.choice(others[others != inst]))
        env_to = envelopes.of(other)
    ratio = 2.0 ** (rng.uniform(-settings.warp_semitones, settings.warp_semitones) / 12.0) if warp else 1.0
    gains = timbre_filter(env_from, env_to, amount=float(rng.uniform(*settings.morph_amount)), warp=ratio)
    out = np.fft.irfft(spectrum * gains, n=L).astype(np.float32)
    top, before = float(np.max(np.abs(out))), float(np.max(np.abs(entry)))
    return out * np.float32(before / top) if top > 1e-9 else entry
