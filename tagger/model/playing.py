"""How one instrument plays in a training example: its notes placed at onsets, cut and faded (`_place`),
chords (`chord`), sections of several players (`section`, `detuned`) and drum beats (`drum_beat`)."""

from __future__ import annotations

import numpy as np

from tagger import constants as C
from tagger.model.pool import NotePool

L = C.WINDOW_SAMPLES
SR = C.SAMPLE_RATE


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


SECTION_DETUNE_CENTS = 12.0
"""Largest detuning of a section's player (uniform in +-, in cents)."""
SECTION_DELAY_S = 0.04
"""Largest delay of a section's player after the first (seconds)."""
CHORD_INTERVALS = np.array([3, 4, 5, 7, 8, 9, 12, -12, -5, -7])
"""Intervals in semitones (from the chord's first note) that a chord's other notes prefer."""


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
