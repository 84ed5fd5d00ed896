"""Read note datasets in the NSynth layout: ``examples.json`` + ``audio/<note_str>.wav``.

Works on the real NSynth (nsynth-train/valid/test folders) and on datasets rendered by
`tagger dataset render`, which add a ``split.json`` (instrument -> train/valid/test) so every later
step uses the same split, and negative notes (families outside the 10, used only as negatives).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger.errors import DatasetError
from tagger.instruments import FAMILIES

SPLITS = ("train", "valid", "test")
SPLIT_FILE = "split.json"
PAPER_SOURCES = ("acoustic",)
"""The paper's filter: acoustic instruments only (and synth_lead excluded, which is not a family here)."""
REQUIRED_FIELDS = ("pitch", "velocity", "instrument_family_str", "instrument_source_str", "instrument_str")


@dataclass(frozen=True)
class Note:
    """One note of a dataset."""

    note_str: str
    pitch: int
    velocity: int
    family: str
    """instrument_family_str: one of the families, or another category for negatives."""
    source: str
    instrument: str
    """instrument_str: the unit that splits never cut across."""
    path: Path
    group: str
    """What a split keeps together: the record's "group" field when it has one, else the GM program
    (all SoundFonts) when known, else the instrument."""
    split: str | None = None
    soundfont: str = ""
    """The sample library or synthesis the note comes from (``soundfont`` of the record), if known."""


@dataclass
class NoteDataset:
    """The notes of an NSynth-format folder, filtered; `negatives` holds notes of no family."""

    root: Path
    notes: list[Note]
    negatives: list[Note] = field(default_factory=list)
    families: tuple[str, ...] = FAMILIES
    split: str | None = None
    """The split it was loaded with (None: every split's notes)."""
    synth_lead: int = 0
    """The notes of NSynth's synth_lead family it left out (of the sources and split kept), as the
    paper leaves that family out."""
    split_sizes: dict[str, int] = field(default_factory=dict)
    """The notes of its families in each split of the folder, before `split` kept one's (empty where
    it has no split): what an error about a split with too few notes names."""

    @classmethod
    def load(
        cls,
        root: str | os.PathLike,
        *,
        families: Sequence[str] = FAMILIES,
        sources: Sequence[str] | None = None,
        split: str | None = None,
        check_audio: bool = False,
    ) -> NoteDataset:
        """Load ``examples.json`` from `root`.

        Parameters
        ----------
        sources : instrument sources to keep (e.g. `PAPER_SOURCES`); None keeps all.
        split : keep only this split ('train', 'valid', 'test'); needs ``split.json`` unless the
            folder is a real NSynth split folder (``nsynth-valid`` ...), whose name gives the split.
        check_audio : raise if a note's WAV file is missing.
        """
        root = Path(root)
        meta_path = root / "examples.json"
        if not meta_path.is_file():
            raise DatasetError(root, "not an NSynth-format dataset (examples.json is missing)")
        meta = read_json(meta_path)
        if not isinstance(meta, dict):
            raise DatasetError(meta_path, "examples.json must map note_str to a note record")
        if not meta:  # (was: "run tagger dataset split first", or "no notes ... in split 'test'", for a `{}`)
            raise DatasetError(meta_path, "lists no notes: the dataset is empty (render one with `tagger dataset "
                                          "render`, or give a folder of NSynth's notes)")  # fmt: skip
        assignment = read_split(root)
        folder_split = _folder_split(root) if assignment is None else None  # (split.json's assignment first)
        if split is not None and split not in SPLITS:
            has = sorted(set(assignment.values())) if assignment is not None else [folder_split] if folder_split else []
            raise DatasetError(root, f"unknown split {split!r}; expected one of {', '.join(SPLITS)}"
                                     + (f" (the dataset's: {', '.join(has)})" if has else ""))  # fmt: skip
        if split is not None and assignment is None and folder_split is None:
            raise DatasetError(root, "the dataset has no split yet; run `tagger dataset split` first")
        notes, negatives = [], []
        split_sizes: dict[str, int] = {}
        synth_lead = 0
        owners: dict[str, str] = {}
        for key, rec in meta.items():
            _check_record(meta_path, key, rec)
            note_str = rec.get("note_str", key)
            if note_str in owners:  # (two records, one audio file: the note would be scored and mixed twice)
                raise DatasetError(meta_path, f"notes {owners[note_str]!r} and {key!r} both have note_str "
                                              f"{note_str!r}: one audio file for two records")  # fmt: skip
            owners[note_str] = key
            family = rec["instrument_family_str"]
            if sources is not None and rec["instrument_source_str"] not in sources:
                continue
            instrument = rec["instrument_str"]
            note_split = assignment.get(instrument) if assignment is not None else folder_split
            if note_split is not None and family in families:
                split_sizes[note_split] = split_sizes.get(note_split, 0) + 1
            if split is not None and note_split != split:
                continue
            if family == "synth_lead":  # (the paper's exclusion: counted, so that evaluate can say so)
                synth_lead += 1
                continue
            program = rec.get("program")
            group = f"{'kit' if rec.get('bank') == 128 else 'gm'}{program:03d}" if program is not None else instrument
            if rec.get("group"):  # a source names what must stay on one side of a split (an STK class, a kit)
                group = str(rec["group"])
            note = Note(
                note_str=note_str,
                pitch=int(rec["pitch"]),
                velocity=int(rec["velocity"]),
                family=family,
                source=rec["instrument_source_str"],
                instrument=instrument,
                path=root / "audio" / f"{note_str}.wav",
                group=group,
                split=note_split,
                soundfont=str(rec.get("soundfont") or ""),
            )
            if check_audio and not note.path.is_file():
                raise DatasetError(note.path, "audio file listed in examples.json is missing")
            (notes if family in families else negatives).append(note)
        notes.sort(key=lambda n: n.note_str)
        negatives.sort(key=lambda n: n.note_str)
        return cls(root=root, notes=notes, negatives=negatives, families=tuple(families), split=split,
                   synth_lead=synth_lead, split_sizes=dict(sorted(split_sizes.items())))  # fmt: skip

    def split_choices(self) -> str:
        """What to add to an error about the split it was loaded with holding too few notes: the
        splits the folder has, with their notes, and how to choose one (``; the dataset's splits: valid
        (60 notes): choose one with --split (e.g. --split valid)``: `tagger dataset mix` and `tagger
        evaluate` take --split test by default, which a real ``nsynth-valid`` folder lacks); empty where
        it was loaded whole or the folder has no split. The split suggested is one --split takes
        (`SPLITS`) other than the one loaded (was: the largest of all, so ``--split unused``, an
        ablation's split that --split refuses as unknown, or for ``dataset mix`` the very split that
        had too few families); none where there is no such split."""
        if self.split is None or not self.split_sizes:
            return ""
        sizes = ", ".join(f"{name} ({count:,} notes)" for name, count in self.split_sizes.items())
        others = {name: count for name, count in self.split_sizes.items() if name in SPLITS and name != self.split}
        if not others:
            return f"; the dataset's splits: {sizes}"
        best = max(others, key=lambda name: others[name])
        return f"; the dataset's splits: {sizes}: choose one with --split (e.g. --split {best})"

    def by_family(self) -> dict[str, list[Note]]:
        out: dict[str, list[Note]] = {f: [] for f in self.families}
        for n in self.notes:
            out[n.family].append(n)
        return out

    def counts(self) -> dict[str, int]:
        c = Counter(n.family for n in self.notes)
        return {f: c.get(f, 0) for f in self.families}

    def labels(self) -> np.ndarray:
        """One-hot presence labels of `notes` [shape=(n, n_families), dtype=uint8]."""
        index = {f: i for i, f in enumerate(self.families)}
        y = np.zeros((len(self.notes), len(self.families)), dtype=np.uint8)
        for i, n in enumerate(self.notes):
            y[i, index[n.family]] = 1
        return y


_TEXT_FIELDS = ("instrument_family_str", "instrument_source_str", "instrument_str")
_INT_FIELDS = ("pitch", "velocity")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"the key {key!r} appears twice in one object (which one holds?)")
        out[key] = value
    return out


def read_json(path: Path):
    """The JSON content of a dataset's metadata file (a UTF-8 BOM in front, as Windows editors write
    it, is read past); a file that is not UTF-8 JSON, that repeats a key
    (two records for one note: Python's json would keep the last one silently), that nests too
    deeply for Python's parser (a `RecursionError` traceback) or cannot be read is a `DatasetError`
    naming it."""
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise DatasetError(path, f"invalid JSON: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(path, f"invalid JSON: {exc}") from None
    except RecursionError:  # (`[[[[...` thousands deep: Python's parser gives up, a traceback)
        raise DatasetError(path, "invalid JSON: nested too deeply to be a dataset's metadata") from None
    except OSError as exc:
        raise DatasetError(path, f"cannot read it: {exc.strerror or exc}") from None


MAX_NAME_BYTES = 240
"""The longest note_str taken (its file name, ``<note_str>.wav``, must fit a file system's 255 bytes)."""


def check_file_name(name: str) -> str | None:
    """Why `name` cannot name a file inside its folder (a path separator, NUL, too long), or None."""
    if "/" in name or "\\" in name or "\x00" in name:
        return "holds a path separator or NUL (a note names a file inside audio/, never a path)"
    if name in (".", ".."):
        return "is not a file name"
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def _check_record(meta_path: Path, key: str, rec) -> None:
    """Refuse a note record this reader cannot use, naming examples.json, the note and the field (a
    partly downloaded or hand-edited NSynth must not end in a traceback, nor a note_str with path
    parts read a file outside the dataset's audio/ folder)."""
    if not isinstance(rec, dict):
        raise DatasetError(meta_path, f"note {key!r} is {type(rec).__name__}, not a note record (an object)")
    missing = [f for f in REQUIRED_FIELDS if f not in rec]
    if missing:
        raise DatasetError(meta_path, f"note {key!r} lacks field(s) {', '.join(missing)}")
    for name in (*_TEXT_FIELDS, *(["note_str"] if "note_str" in rec else [])):
        if not isinstance(rec[name], str) or not rec[name]:
            raise DatasetError(meta_path, f"note {key!r}: {name} is {rec[name]!r}, expected a name")
    for name in (*_INT_FIELDS, *(["program"] if rec.get("program") is not None else [])):
        value = rec[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise DatasetError(meta_path, f"note {key!r}: {name} is {value!r}, expected a whole number")
        if name in _INT_FIELDS and not 0 <= value <= 127:
            raise DatasetError(meta_path, f"note {key!r}: {name} is {value!r}, expected a MIDI value (0-127)")
    why = check_file_name(rec.get("note_str", key))
    if why:
        raise DatasetError(meta_path, f"note {key!r}: its note_str {why}")


def _check_samples(path: Path, data: np.ndarray) -> None:
    """Refuse a note of NaN or infinite samples (NaN features, a NaN mixture) or of samples beyond
    `tagger.features.PEAK_LIMIT` (a mixture's other notes would be inaudible under it, their labels
    wrong): a float file of garbage, not a recording."""
    from tagger.features import PEAK_LIMIT

    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise DatasetError(path, f"note audio holds {bad} NaN or infinite samples")
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > PEAK_LIMIT:
        raise DatasetError(path, f"note audio holds samples of {peak:.3g}, beyond {PEAK_LIMIT:.0f} "
                                 "(full scale is 1): not a recording")  # fmt: skip


def _check_whole(path: Path, frames: int, rate: int) -> None:
    """Refuse a note file of no samples, or a WAV/AIFF whose data chunk holds less than its header
    declares (a download or copy that stopped, or a header claiming gigabytes): libsndfile reads
    what is there, and the note was scored and mixed padded with silence, as if it were the
    instrument's whole note. `frames`: the frames libsndfile finds in the file. Made before a
    sample is read."""
    from tagger.audio.lengths import _data_chunk

    if frames <= 0:
        raise DatasetError(path, "note audio holds no samples")
    chunk = _data_chunk(path, "WAV") or _data_chunk(path, "AIFF")
    if chunk is not None and 0 < chunk[1] < chunk[0] != 0xFFFFFFFF:
        held = frames / rate
        raise DatasetError(path, f"note audio cut short: the file holds {held:.2f} s of the "
                                 f"{held * chunk[0] / chunk[1]:.2f} s its header declares")  # fmt: skip


NOTE_READ_MARGIN = 0.1
"""Seconds of a note file read beyond the 4 s window (a resampler's edge); the rest is never read."""
CUT_TOLERANCE = 0.01
"""Seconds a note may run past the window before `load_note_audio` lists it as cut."""


def load_note_audio(notes: Iterable[Note], *, cut: list[dict] | None = None) -> np.ndarray:
    """Decode notes as mono 16 kHz windows [shape=(n, 64000), dtype=float32] (padded/trimmed to 4 s).

    Each file is read for the window and `NOTE_READ_MARGIN` beyond it, never whole (was: a note file
    of hours read into memory entire, every NSynth note being 4 s). A note longer than the window
    (by more than `CUT_TOLERANCE`) is scored on its first 4 s and, when `cut` is given, listed there
    (``{"file": note_str, "seconds": its length}``, each note once). Raises `DatasetError` naming
    the note's file when it cannot be read, holds no samples, is cut short of what its header
    declares (one claiming gigabytes it does not hold) or holds NaN, infinite or absurdly large
    samples within what is read."""
    import soundfile as sf

    from tagger import audio

    notes = list(notes)
    out = np.zeros((len(notes), C.WINDOW_SAMPLES), dtype=np.float32)
    listed = {c["file"] for c in cut} if cut is not None else set()
    for i, note in enumerate(notes):
        try:
            if not note.path.is_file():  # (soundfile says "System error" for a missing file; a FIFO would block)
                why = "is not a regular file" if note.path.exists() else "is missing"
                raise DatasetError(note.path, f"note audio file {why}")
            with sf.SoundFile(os.fsencode(note.path)) as f:  # (bytes: a name not UTF-8)
                rate, frames = f.samplerate, f.frames
                _check_whole(note.path, frames, rate)
                wanted = int(np.ceil((C.WINDOW_SECONDS + NOTE_READ_MARGIN) * rate))
                data = f.read(min(frames, wanted), dtype="float32", always_2d=True)
            _check_samples(note.path, data)
            clip = data[:, 0]
            if rate != C.SAMPLE_RATE or data.shape[1] > 1:  # (a scan's downmix: channels in antiphase inverted,
                clip = audio.load(note.path, max_seconds=C.WINDOW_SECONDS)  # empty ones left out; was: their mean)
        except FileNotFoundError:
            raise DatasetError(note.path, "note audio file is missing") from None
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise DatasetError(note.path, f"cannot read note audio: {exc}") from None
        except OSError as exc:
            raise DatasetError(note.path, f"cannot read note audio: {exc.strerror or exc}") from None
        if cut is not None and frames / rate > C.WINDOW_SECONDS + CUT_TOLERANCE and note.note_str not in listed:
            listed.add(note.note_str)
            cut.append({"file": note.note_str, "seconds": round(frames / rate, 3)})
        n = min(len(clip), C.WINDOW_SAMPLES)
        out[i, :n] = clip[:n]
    return out


_FOLDER_SPLIT = re.compile(rf"(?:^|[-_. ])({'|'.join(SPLITS)})$")


def _folder_split(root: Path) -> str | None:
    """The split a real NSynth folder's name gives (``nsynth-test``, ``nsynth_valid``, ``test``):
    the split's name as the last word of the folder's name, never its last letters (a folder named
    ``latest`` or ``contest`` is no test split). The name of the folder itself, not of the path's
    last part: ``.`` inside ``nsynth-test`` (`tagger evaluate .`) or ``..`` from its ``audio/`` was
    a folder of no split, `run tagger dataset split first`; then, for a link of another name
    (``current`` -> ``nsynth-valid``), the name of the folder it leads to. A link whose name gives
    one split and whose folder's name another (``nsynth-test`` -> ``nsynth-valid``) is a
    `DatasetError`: its notes were scored as the link's split, a model calibrated on the valid
    split judged on it without a word."""
    from tagger.paths import absolute

    real = os.path.realpath(root)
    named, led = (_FOLDER_SPLIT.search(Path(p).name.lower()) for p in (absolute(root), real))
    if named and led and named.group(1) != led.group(1):
        raise DatasetError(root, f"its name gives the {named.group(1)} split, the folder it leads to "
                                 f"({real}) the {led.group(1)} split: give that folder itself, "
                                 "or say each instrument's split in a split.json")  # fmt: skip
    match = named or led
    return match.group(1) if match else None


def read_split(root: str | os.PathLike) -> dict[str, str] | None:
    """instrument_str -> split, from ``split.json``; None when the dataset has no split."""
    path = Path(root) / SPLIT_FILE
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except DatasetError as exc:
        raise DatasetError(path, f"invalid split file: {exc.reason}") from None
    try:
        assignment = dict(data["instruments"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(path, f"invalid split file: {exc}") from None
    bad = [(k, v) for k, v in assignment.items() if not isinstance(v, str)]
    if bad:  # (a split is a name: train, valid, test, or another, e.g. an ablation's "unused")
        raise DatasetError(path, f"invalid split file: instrument {bad[0][0]!r} is in split {bad[0][1]!r}, "
                                 "expected a split's name")  # fmt: skip
    return assignment


def _write_split(path: Path, text: str) -> None:
    """Write ``split.json`` whole through a temporary file of a name of its own (`write_atomic`; was:
    ``split.json.tmp``, written through a link of that name into whatever file it pointed at); a
    ``split.json`` that is a folder or another non-file is a `DatasetError` (was: a traceback)."""
    from tagger.outputs import write_atomic

    if path.is_dir() or (path.exists() and not path.is_file()):
        raise DatasetError(path, "is not a file (the split is written as split.json): nothing was written")
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise DatasetError(path, f"cannot write the split: {exc.strerror or exc}") from None


def split_dataset(root: str | os.PathLike, *, seed: int = 0, valid: float = 0.15, test: float = 0.15) -> dict:
    """Split a dataset by instrument, never by note, and write ``split.json``.

    Instruments are grouped by General MIDI program across SoundFonts (MuseScore_General reuses
    FluidR3 samples in many programs, so the same program of both must stay on one side), then, per
    family, whole groups go to train/valid/test. A family with only two groups (vocal: choir aahs,
    voice oohs) trains on one and splits the other's SoundFonts between valid and test.
    """
    root = Path(root)
    ds = NoteDataset.load(root)
    rng = np.random.default_rng(seed)
    by_cat: dict[str, dict[str, set[str]]] = {}
    for n in ds.notes + ds.negatives:
        by_cat.setdefault(n.family, {}).setdefault(n.group, set()).add(n.instrument)
    assignment: dict[str, str] = {}
    for cat in sorted(by_cat):
        groups = sorted(by_cat[cat])
        rng.shuffle(groups)
        k = len(groups)
        if k >= 3:
            n_test = max(1, int(round(test * k)))
            n_valid = max(1, int(round(valid * k)))
            parts = {"test": groups[:n_test], "valid": groups[n_test : n_test + n_valid], "train": groups[n_test + n_valid :]}
            for name, gs in parts.items():
                for g in gs:
                    for inst in by_cat[cat][g]:
                        assignment[inst] = name
        elif k == 2:
            for inst in by_cat[cat][groups[0]]:
                assignment[inst] = "train"
            held = sorted(by_cat[cat][groups[1]])
            for i, inst in enumerate(held):
                assignment[inst] = "valid" if i % 2 == 0 else "test"
        else:
            for inst in by_cat[cat][groups[0]]:
                assignment[inst] = "train"
    payload = {"seed": seed, "grouping": "gm-program", "instruments": dict(sorted(assignment.items()))}
    _write_split(root / SPLIT_FILE, json.dumps(payload, indent=1))
    summary: dict[str, dict[str, int]] = {}
    for n in ds.notes + ds.negatives:
        summary.setdefault(n.family, Counter())[assignment[n.instrument]] += 1
    return {cat: dict(c) for cat, c in sorted(summary.items())}
