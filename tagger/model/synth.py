"""Training examples: the `mixture` and `solo` recipes, with augmentation, generated in parallel.

A `NotePool` (`tagger.model.pool`) holds the notes of one split as int16 audio in a memory-mapped
``.npy`` file, so worker processes share it without copying. Examples are generated in seeded
chunks: the same seed gives the same examples whatever the number of workers.

mixture recipe (default): each example holds 0..10 distinct families. Half of the families enter
as one whole note at time 0 (the paper's protocol); the others as 1-3 notes of the same instrument
at random onsets, pitches and lengths, as in real music. Non-family sounds (drum kit hits, synths,
effects) are added as negatives, and level-0 examples are silence, noise or negatives only.

solo recipe (the paper's): one note per example (a family's, or a negative), no mixing.

Augmentation for unseen sample libraries: random gain, equalisation (a random tilt and peaks
applied to the power spectrum), light noise, synthetic room reverb, random onsets and truncation.

Timbre augmentation (off by default; `morph_prob`, `warp_prob`; `tagger.model.timbre`) makes
instruments that no source holds out of those the pool has, one family entry at a time: the
entry's spectral envelope is moved part of the way towards that of another instrument of its
family (envelope morphing) and/or stretched along the frequency axis without changing its pitch (a
larger or smaller body).

Chords (off by default; `chord_prob`; chords, sections and drum beats: `tagger.model.playing`):
a note that a family entry plays is, with that chance, 2-4 notes of the same instrument sounding
together, as pianos, guitars, organs and sections play in music; a chord is one instrument, and
its label is one family. Drum beats (off by default; `drum_prob`): a drum kit plays a beat under
the example, as under most music; drums are no family.

Sections (off by default; `section_prob`): a note that a family entry plays is, with that chance, a
section: 2-6 players of its family (the same instrument or another of the family) on the same
pitch or an octave apart, each detuned by a few cents and entering a few milliseconds apart, as a
brass section, a string section or a choir plays: an ensemble that no source holds as one
instrument, made from the solo instruments it does. Its label is that one family.

Codecs (off by default; `codec_prob`): a finished example is, with that chance, encoded and decoded
by a lossy codec a library's files use (`tagger.model.lossy`: MP3, AAC, Opus, Vorbis at common and
low bitrates), before its spectrogram (the EQ, applied to the spectrum, comes after it). Its draws
come from a stream of their own, so every other example is the one made with codecs off.

Loud masters (off by default; `master_prob`): a finished example is, with that chance, mastered as
much commercial music is (`tagger.model.mastering`): brought to a peak of -1 dBFS, raised by 3-18 dB,
then hard-clipped at full scale, sent through tanh or through a peak limiter, before a codec (as a
loud master is encoded after it is made). Its label is unchanged (mastering adds no instrument), and
its draws come from a stream of their own, so every other example is the one made with it off; with
codecs on too, the codec's draws are the same, but a window left alone that follows a mastered one
in the signal of their codec (`lossy.round_trip`) comes back with other coding noise (the encoders'
bit reservoirs and rate control carry over).
"""

from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np

from tagger import constants as C
from tagger import features as F
from tagger.model.playing import (CHORD_INTERVALS, SECTION_DELAY_S, SECTION_DETUNE_CENTS, _add_instrument, _place, chord,
                                  detuned, drum_beat, section)  # fmt: skip
from tagger.model.pool import NotePool
from tagger.model.settings import SynthSettings
from tagger.model.timbre import MAX_TIMBRE_DB, _Envelopes, _timbre, spectral_envelope, timbre_filter

__all__ = [
    "CHORD_INTERVALS", "CHORD_SETTINGS", "CODEC_SETTINGS", "CODEC_STREAM", "DRUM_SETTINGS", "L", "MASTER_SETTINGS",
    "MASTER_STREAM", "MAX_TIMBRE_DB", "NotePool", "SECTION_DELAY_S", "SECTION_DETUNE_CENTS", "SECTION_SETTINGS", "SR", "SynthSettings", "TIMBRE_SETTINGS",
    "chord", "detuned", "drum_beat", "eq_curve", "finish_example", "generate", "generate_chunk", "mixture_example",
    "section", "settings_dict", "solo_example", "spectral_envelope", "timbre_filter",
]  # fmt: skip
"""What callers use of this module: the recipes and their settings, and the pool's (`tagger.model.pool`),
the playing's (`tagger.model.playing`) and the timbre's (`tagger.model.timbre`) names beside them."""

L = C.WINDOW_SAMPLES
SR = C.SAMPLE_RATE

TIMBRE_SETTINGS = ("morph_prob", "warp_prob", "morph_amount", "warp_semitones")
"""The settings of the timbre augmentation (left out of example signatures while it is off)."""
CHORD_SETTINGS = ("chord_prob",)
"""The settings of the chords (left out of example signatures while they are off)."""
DRUM_SETTINGS = ("drum_prob",)
"""The settings of the drum beats (left out of example signatures while they are off)."""
SECTION_SETTINGS = ("section_prob",)
"""The settings of the sections (left out of example signatures while they are off)."""
CODEC_SETTINGS = ("codec_prob",)
"""The settings of the codec augmentation (left out of example signatures while it is off)."""
CODEC_STREAM = 7
"""Seeds the codec draws of a chunk apart from its examples' (so the examples are the same with it off)."""
MASTER_SETTINGS = ("master_prob",)
"""The settings of the loud-mastering augmentation (left out of example signatures while it is off)."""
MASTER_STREAM = 8
"""Seeds the mastering draws of a chunk apart from its examples' and the codec's (so the examples are the same with it off)."""


def _reverb(x: np.ndarray, rng) -> np.ndarray:
    from scipy.signal import fftconvolve

    rt60 = rng.uniform(0.2, 1.5)
    n = int(min(rt60, 1.5) * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n).astype(np.float32) * np.exp(-6.91 * t / rt60).astype(np.float32)
    ir[0] = 0.0
    ir /= np.sqrt(np.sum(ir**2)) + 1e-9
    wet = fftconvolve(x, ir)[:L].astype(np.float32)
    mix = rng.uniform(0.1, 0.5)
    return (1 - mix) * x + mix * wet


def _noise(rng) -> np.ndarray:
    white = rng.standard_normal(L).astype(np.float32)
    if rng.random() < 0.5:  # pink-ish: integrate white noise spectrum slope
        spec = np.fft.rfft(white)
        f = np.maximum(np.arange(len(spec)), 1)
        white = np.fft.irfft(spec / np.sqrt(f), n=L).astype(np.float32)
    return white / (np.sqrt(np.mean(white**2)) + 1e-9)


def eq_curve(rng, n_bins: int = C.STFT_BINS) -> np.ndarray:
    """A random smooth power gain over STFT bins: tilt, 1-2 bell bands, sometimes a low-pass."""
    freqs = np.linspace(0, SR / 2, n_bins)
    octave = np.log2(np.maximum(freqs, 20.0) / 1000.0)
    gain_db = rng.uniform(-3.0, 3.0) * octave
    for _ in range(int(rng.integers(1, 3))):
        centre = rng.uniform(-3.0, 3.0)
        width = rng.uniform(0.3, 1.5)
        gain_db += rng.uniform(-8.0, 8.0) * np.exp(-0.5 * ((octave - centre) / width) ** 2)
    if rng.random() < 0.25:
        cutoff = rng.uniform(3000, 7500)
        gain_db -= 12.0 * np.maximum(0.0, np.log2(np.maximum(freqs, 1.0) / cutoff)) * rng.uniform(1.0, 4.0)
    return (10.0 ** (gain_db / 10.0)).astype(np.float32)


def mixture_example(
    pool: NotePool, rng, settings: SynthSettings, *, instruments: dict[int, int] | None = None,
    envelopes: _Envelopes | None = None, negatives: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One mixture-recipe example: audio [shape=(64000,)] and its presence label.

    `instruments` (family index -> instrument id) fixes which instruments play, as in one track;
    by default the number of families and the instruments are drawn at random. `negatives` (instrument
    ids) limits the non-family sounds that may be mixed in (default: every negative of the pool).
    """
    nf = len(pool.families)
    if instruments is None:
        available = [f for f in range(nf) if len(pool.family_instruments[f])]
        weights = np.asarray(settings.level_weights_for(nf)[: len(available) + 1], dtype=np.float64)
        k = int(rng.choice(len(weights), p=weights / weights.sum()))
        plan: list[tuple[int, int | None]] = [(int(f), None) for f in rng.choice(available, size=k, replace=False)]
    else:
        plan = list(instruments.items())
    k = len(plan)
    label = np.zeros(nf, dtype=np.uint8)
    out = np.zeros(L, dtype=np.float32)
    for f, inst in plan:
        label[f] = 1
        if inst is None:
            inst = int(rng.choice(pool.family_instruments[f]))
        gain = 10 ** (rng.uniform(*settings.gain_db) / 20)
        if settings.morph_prob or settings.warp_prob:
            entry = np.zeros(L, dtype=np.float32)
            _add_instrument(entry, pool, inst, rng, aligned=rng.random() < settings.aligned_share, drum=False, gain=gain,
                            chord_prob=settings.chord_prob, section_prob=settings.section_prob, family=f)  # fmt: skip
            out += _timbre(entry, pool, inst, f, rng, settings, envelopes or _Envelopes(pool))
        else:
            _add_instrument(out, pool, inst, rng, aligned=rng.random() < settings.aligned_share, drum=False, gain=gain,
                            chord_prob=settings.chord_prob, section_prob=settings.section_prob, family=f)  # fmt: skip
    silent0 = k == 0 and rng.random() < settings.silent_level0_prob
    negatives = pool.negative_instruments if negatives is None else negatives
    if len(negatives) and not silent0 and (k == 0 or rng.random() < settings.negative_prob):
        for _ in range(int(rng.integers(1, 3))):
            inst = int(rng.choice(negatives))
            drum = bool(pool.is_drum[pool.by_instrument[inst][0]])
            gain = 10 ** (rng.uniform(*settings.gain_db) / 20)
            _add_instrument(out, pool, inst, rng, aligned=rng.random() < 0.3 and not drum, drum=drum, gain=gain)
    if settings.drum_prob and len(pool.drum_instruments) and not silent0 and rng.random() < settings.drum_prob:
        out += drum_beat(pool, int(rng.choice(pool.drum_instruments)), rng, gain=10 ** (rng.uniform(*settings.gain_db) / 20))
    return finish_example(out, rng, settings), label


def solo_example(pool: NotePool, rng, settings: SynthSettings, envelopes: _Envelopes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One solo-recipe example: a single note of a family or a negative (or silence)."""
    nf = len(pool.families)
    label = np.zeros(nf, dtype=np.uint8)
    out = np.zeros(L, dtype=np.float32)
    if rng.random() < settings.solo_negative_share:
        if len(pool.negative_instruments) and rng.random() < 0.9:
            inst = int(rng.choice(pool.negative_instruments))
            _place(out, pool.clip(int(rng.choice(pool.by_instrument[inst]))), onset=0, length=L, gain=1.0)
    else:
        available = [f for f in range(nf) if len(pool.family_instruments[f])]
        f = int(rng.choice(available))
        label[f] = 1
        inst = int(rng.choice(pool.family_instruments[f]))
        _place(out, pool.clip(int(rng.choice(pool.by_instrument[inst]))), onset=0, length=L, gain=1.0)
        if settings.morph_prob or settings.warp_prob:
            out = _timbre(out, pool, inst, f, rng, settings, envelopes or _Envelopes(pool))
    return finish_example(out, rng, settings), label


def finish_example(out: np.ndarray, rng, settings: SynthSettings) -> np.ndarray:
    """The augmentation every example ends with: maybe room reverb, a random peak level, maybe light noise."""
    peak = float(np.max(np.abs(out)))
    if peak > 1e-6:
        if rng.random() < settings.reverb_prob:
            out = _reverb(out, rng)
            peak = float(np.max(np.abs(out))) or 1.0
        out *= rng.uniform(0.2, 0.95) / peak
    if rng.random() < settings.noise_prob:
        out += _noise(rng) * 10 ** (rng.uniform(-65, -35) / 20)
    return out.astype(np.float32)


def generate_chunk(
    pool_dir: str, *, seed: int, chunk: int, count: int, settings: SynthSettings, feature_config: F.FeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Generate `count` examples of one seeded chunk: features (float16) and labels (uint8)."""
    pool = NotePool(pool_dir)
    rng = np.random.default_rng([seed, chunk])
    make = solo_example if settings.recipe == "solo" else mixture_example
    audio = np.zeros((count, L), dtype=np.float32)
    labels = np.zeros((count, len(pool.families)), dtype=np.uint8)
    gains = np.ones((count, C.STFT_BINS), dtype=np.float32)
    envelopes = _Envelopes(pool)
    for i in range(count):
        audio[i], labels[i] = make(pool, rng, settings, envelopes=envelopes)
        if rng.random() < settings.eq_prob:
            gains[i] = eq_curve(rng)
    if settings.master_prob:
        from tagger.model import mastering

        audio = mastering.augment(audio, np.random.default_rng([seed, chunk, MASTER_STREAM]), prob=settings.master_prob)
    if settings.codec_prob:
        from tagger.model import lossy

        audio = lossy.augment(audio, np.random.default_rng([seed, chunk, CODEC_STREAM]), prob=settings.codec_prob)
    feats = np.concatenate(
        [
            F.compute(windows=audio[j : j + 64], config=feature_config, spectral_gain=gains[j : j + 64])
            for j in range(0, count, 64)
        ]
    )
    return feats.astype(np.float16), labels


def generate(
    pool_dir: str | os.PathLike,
    *,
    count: int,
    seed: int,
    settings: SynthSettings,
    feature_config: F.FeatureConfig,
    jobs: int = -1,
    chunk_size: int = 500,
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate `count` examples in parallel seeded chunks (deterministic for a seed)."""
    from joblib import Parallel, delayed

    sizes = [min(chunk_size, count - s) for s in range(0, count, chunk_size)]
    results = []
    for res in Parallel(n_jobs=jobs, return_as="generator")(
        delayed(generate_chunk)(str(pool_dir), seed=seed, chunk=i, count=n, settings=settings, feature_config=feature_config)
        for i, n in enumerate(sizes)
    ):
        results.append(res)
        if progress:
            progress(len(res[0]))
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


def settings_dict(settings: SynthSettings) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
