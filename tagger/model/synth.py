"""Training examples: the `mixture` and `solo` recipes, with augmentation, generated in parallel.

A `NotePool` holds the notes of one split as int16 audio in a memory-mapped ``.npy`` file, so
worker processes share it without copying. Examples are generated in seeded chunks: the same seed
gives the same examples whatever the number of workers.

mixture recipe (default): each example holds 0..10 distinct families. Half of the families enter
as one whole note at time 0 (the paper's protocol); the others as 1-3 notes of the same instrument
at random onsets, pitches and lengths, as in real music. Non-family sounds (drum kit hits, synths,
effects) are added as negatives, and level-0 examples are silence, noise or negatives only.

solo recipe (the paper's): one note per example (a family's, or a negative), no mixing.

Augmentation for unseen sample libraries: random gain, equalisation (a random tilt and peaks
applied to the power spectrum), light noise, synthetic room reverb, random onsets and truncation.

Timbre augmentation (off by default; `morph_prob`, `warp_prob`) makes instruments that no source
holds out of those the pool has, one family entry at a time: the entry's spectral envelope is moved
part of the way towards that of another instrument of its family (envelope morphing) and/or
stretched along the frequency axis without changing its pitch (a larger or smaller body).

Chords (off by default; `chord_prob`): a note that a family entry plays is, with that chance, 2-4
notes of the same instrument sounding together, as pianos, guitars, organs and sections play in
music; a chord is one instrument, and its label is one family. Drum beats (off by default;
`drum_prob`): a drum kit plays a beat under the example, as under most music; drums are no family.

Sections (off by default; `section_prob`): a note that a family entry plays is, with that chance, a
section: 2-6 players of its family (the same instrument or another of the family) on the same
pitch or an octave apart, each detuned by a few cents and entering a few milliseconds apart, as a
brass section, a string section or a choir plays: an ensemble that no source holds as one
instrument, made from the solo instruments it does. Its label is that one family.

Codecs (off by default; `codec_prob`): a finished example is, with that chance, encoded and decoded
by a lossy codec a library's files use (`tagger.model.lossy`: MP3, AAC, Opus, Vorbis at common and
low bitrates), before its spectrogram (the EQ, applied to the spectrum, comes after it). Its draws
come from a stream of their own, so every other example is the one made with codecs off.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger import features as F
from tagger.data.nsynth import Note, NoteDataset, load_note_audio
from tagger.model.settings import SynthSettings

L = C.WINDOW_SAMPLES
SR = C.SAMPLE_RATE


class NotePool:
    """Notes of one split as a memory-mapped int16 array plus per-note metadata."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        meta = json.loads((self.directory / "pool.json").read_text())
        self.families: list[str] = meta["families"]
        self.family = np.asarray(meta["family"], dtype=np.int16)  # -1 = negative
        self.instrument = np.asarray(meta["instrument"], dtype=np.int32)
        self.is_drum = np.asarray(meta["is_drum"], dtype=bool)
        self.instrument_names: list[str] = meta["instrument_names"]
        self.audio = np.load(self.directory / "audio.npy", mmap_mode="r")
        self.by_instrument: dict[int, np.ndarray] = {}
        for inst in np.unique(self.instrument):
            self.by_instrument[int(inst)] = np.flatnonzero(self.instrument == inst)
        self.family_instruments: list[np.ndarray] = [
            np.unique(self.instrument[self.family == f]) for f in range(len(self.families))
        ]
        self.negative_instruments = np.unique(self.instrument[self.family < 0])
        self.drum_instruments = np.unique(self.instrument[(self.family < 0) & self.is_drum])
        self.pitch = np.asarray(meta["pitch"] if "pitch" in meta else [_pitch_of(n) for n in meta["notes"]], dtype=np.int16)
        """MIDI pitch of each note (-1 when unknown)."""

    def clip(self, index: int) -> np.ndarray:
        return np.asarray(self.audio[index], dtype=np.float32) / 32767.0

    @staticmethod
    def build(
        dataset: NoteDataset, directory: str | os.PathLike, *, max_notes_per_instrument: int = 150, seed: int = 0
    ) -> NotePool:
        """Load (a subsample of) a split's notes into a pool folder; reuses it when already built."""
        directory = Path(directory)
        if (directory / "pool.json").is_file() and (directory / "audio.npy").is_file():
            return NotePool(directory)
        directory.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        chosen: list[Note] = []
        groups: dict[str, list[Note]] = {}
        for n in dataset.notes + dataset.negatives:
            groups.setdefault(n.instrument, []).append(n)
        for inst in sorted(groups):
            notes = groups[inst]
            if len(notes) > max_notes_per_instrument:
                idx = np.sort(rng.choice(len(notes), size=max_notes_per_instrument, replace=False))
                notes = [notes[i] for i in idx]
            chosen.extend(notes)
        names = sorted({n.instrument for n in chosen})
        index = {name: i for i, name in enumerate(names)}
        fam_index = {f: i for i, f in enumerate(dataset.families)}
        tmp = directory / "audio.tmp.npy"
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(len(chosen), L))
        for start in range(0, len(chosen), 512):
            batch = load_note_audio(chosen[start : start + 512])
            arr[start : start + len(batch)] = np.clip(batch * 32767.0, -32767, 32767).astype(np.int16)
        arr.flush()
        del arr
        os.replace(tmp, directory / "audio.npy")
        meta = {
            "families": list(dataset.families),
            "family": [fam_index.get(n.family, -1) for n in chosen],
            "instrument": [index[n.instrument] for n in chosen],
            "is_drum": [n.group.startswith("kit") or n.family == "percussion" for n in chosen],
            "instrument_names": names,
            "notes": [n.note_str for n in chosen],
            "pitch": [int(n.pitch) for n in chosen],
        }
        (directory / "pool.json").write_text(json.dumps(meta))
        return NotePool(directory)


def _pitch_of(note_str: str) -> int:
    """The pitch field of an NSynth note name (``<instrument>-<pitch>-<velocity>``); -1 when it has none."""
    parts = note_str.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else -1


def _place(out: np.ndarray, clip: np.ndarray, *, onset: int, length: int, gain: float) -> None:
    """Add `clip` (from its start, cut to `length` samples with a 20 ms fade) at `onset` (may be < 0)."""
    src = clip[max(0, -onset) :]
    dst = max(0, onset)
    n = min(len(src), L - dst, length)
    if n <= 0:
        return
    seg = src[:n].copy()
    fade = min(n, SR // 50)
    if n < len(src):
        seg[n - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    out[dst : dst + n] += gain * seg


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
SECTION_DETUNE_CENTS = 12.0
"""Largest detuning of a section's player (uniform in +-, in cents)."""
SECTION_DELAY_S = 0.04
"""Largest delay of a section's player after the first (seconds)."""
CHORD_INTERVALS = np.array([3, 4, 5, 7, 8, 9, 12, -12, -5, -7])
"""Intervals in semitones (from the chord's first note) that a chord's other notes prefer."""


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


def chord(pool: NotePool, inst: int, rng, *, size: int) -> np.ndarray:
    """`size` notes of instrument `inst` sounding together [shape=(L,)]: a random first note, then
    notes of other pitches at the intervals of `CHORD_INTERVALS` from it where the instrument has
    them (else any of its notes within an octave; any of its notes when pitches are unknown), each
    at 60-100% gain; fewer notes when the instrument has no more. The sum is scaled by
    1/sqrt(notes), so that a chord is about as loud as one note."""
    notes = pool.by_instrument[inst]
    root = int(rng.choice(notes))
    out = pool.clip(root).copy()
    offsets = pool.pitch[notes].astype(int) - int(pool.pitch[root])
    pitched = pool.pitch[root] >= 0
    unused = notes != root
    count = 1
    for _ in range(size - 1):
        near = notes[unused & np.isin(offsets, CHORD_INTERVALS)] if pitched else notes[:0]
        if not len(near):
            near = notes[unused & (np.abs(offsets) <= 12)] if pitched else notes[unused]
        if not len(near):
            break
        pick = int(rng.choice(near))
        unused &= notes != pick
        if pitched:  # one note per pitch (the pool holds a pitch at several velocities)
            unused &= offsets != int(pool.pitch[pick]) - int(pool.pitch[root])
            unused &= offsets != 0
        out += pool.clip(pick) * np.float32(rng.uniform(0.6, 1.0))
        count += 1
    return out / np.float32(np.sqrt(count))


def detuned(clip: np.ndarray, cents: float, delay: int) -> np.ndarray:
    """`clip` played `cents` higher (resampled: a little shorter or longer, as a player a little
    sharp or flat) and `delay` samples later, cut or zero-padded to its length [shape=(len(clip),)]."""
    n = len(clip)
    ratio = 2.0 ** (cents / 1200.0)
    t = np.arange(n - delay, dtype=np.float64) * ratio
    out = np.zeros(n, dtype=np.float32)
    out[delay:] = np.interp(t, np.arange(n), clip, right=0.0).astype(np.float32)
    return out


def section(pool: NotePool, inst: int, rng, *, size: int, family: int | None = None) -> np.ndarray:
    """`size` players of instrument `inst`'s family on one note [shape=(L,)]: a random note of
    `inst`, then players each either `inst` again (another of its notes of that pitch, else the same
    note) or, with chance 1/2, another instrument of `family` playing that pitch (else an octave
    from it; skipped when it has neither), each detuned by up to `SECTION_DETUNE_CENTS` and
    delayed by up to `SECTION_DELAY_S`, at 60-100% gain. Without a family or pitches, every
    player is `inst`. The sum is scaled by 1/sqrt(players), so that a section is about as loud as
    one note."""
    notes = pool.by_instrument[inst]
    root = int(rng.choice(notes))
    pitch = int(pool.pitch[root])
    members = pool.family_instruments[family] if family is not None else np.array([inst])
    out = pool.clip(root).copy()
    count = 1
    for _ in range(size - 1):
        other = int(rng.choice(members[members != inst])) if len(members) > 1 and rng.random() < 0.5 else inst
        cand = pool.by_instrument[other]
        same = cand[pool.pitch[cand] == pitch] if pitch >= 0 else cand[:0]
        if not len(same) and pitch >= 0:
            same = cand[np.isin(pool.pitch[cand], (pitch - 12, pitch + 12))]
        if not len(same):
            if other != inst:
                continue
            same = np.array([root])
        cents = rng.uniform(-SECTION_DETUNE_CENTS, SECTION_DETUNE_CENTS)
        delay = int(rng.uniform(0.0, SECTION_DELAY_S) * SR)
        out += detuned(pool.clip(int(rng.choice(same))), cents, delay) * np.float32(rng.uniform(0.6, 1.0))
        count += 1
    return out / np.float32(np.sqrt(count))


def _note_or_chord(pool: NotePool, inst: int, rng, chord_prob: float, section_prob: float = 0.0,
                   family: int | None = None) -> np.ndarray:  # fmt: skip
    if section_prob and rng.random() < section_prob:
        return section(pool, inst, rng, size=int(rng.integers(2, 7)), family=family)
    if chord_prob and rng.random() < chord_prob:
        return chord(pool, inst, rng, size=int(rng.integers(2, 5)))
    return pool.clip(int(rng.choice(pool.by_instrument[inst])))


def _add_instrument(out, pool: NotePool, inst: int, rng, *, aligned: bool, drum: bool, gain: float,
                    chord_prob: float = 0.0, section_prob: float = 0.0, family: int | None = None) -> None:  # fmt: skip
    notes = pool.by_instrument[inst]
    if aligned:
        _place(out, _note_or_chord(pool, inst, rng, chord_prob, section_prob, family), onset=0, length=L, gain=gain)
        return
    count = int(rng.integers(2, 9)) if drum else int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    for _ in range(count):
        onset = int(rng.integers(-L // 3, (3 * L) // 4))
        length = int(rng.uniform(0.25, 4.0) * SR) if not drum else L
        clip = pool.clip(int(rng.choice(notes))) if drum else _note_or_chord(pool, inst, rng, chord_prob, section_prob, family)
        _place(out, clip, onset=onset, length=length, gain=gain * rng.uniform(0.6, 1.0))


def drum_beat(pool: NotePool, kit: int, rng, *, gain: float = 1.0) -> np.ndarray:
    """A drum kit playing a beat for one window [shape=(L,)]: three of the kit's sounds, one on
    beats 1 and 3, one on beats 2 and 4, one on eighth notes (each played with chance 0.6), at a
    tempo of 70-160 beats per minute, from a random phase of the bar, each hit at 50-100% gain."""
    notes = pool.by_instrument[kit]
    voices = [int(v) for v in rng.choice(notes, size=3, replace=len(notes) < 3)]
    eighth = 30.0 / rng.uniform(70, 160) * SR
    start = -rng.uniform(0, 8) * eighth
    out = np.zeros(L, dtype=np.float32)
    for i in range(int((L - start) / eighth) + 1):
        onset = int(start + i * eighth)
        hits = [voices[0]] if i % 4 == 0 else [voices[1]] if i % 4 == 2 else []
        if rng.random() < 0.6:
            hits.append(voices[2])
        for v in hits:
            if onset + L > 0:
                _place(out, pool.clip(v), onset=onset, length=L, gain=gain * rng.uniform(0.5, 1.0))
    return out


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
        weights = np.asarray(settings.level_weights[: len(available) + 1], dtype=np.float64)
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
