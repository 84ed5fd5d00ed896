"""The notes training examples are made of: a `NotePool` holds the notes of one split as int16 audio
in a memory-mapped ``.npy`` file, so worker processes share it without copying."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger.data.nsynth import Note, NoteDataset, load_note_audio

L = C.WINDOW_SAMPLES


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
