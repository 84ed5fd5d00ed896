"""What a training run learns from and validates on, and their cache.

The notes (`_load_notes`: the dataset's train and valid splits, without the left-out sources, with
the instrument share), then the note pools, the training examples and the validation sets
(`_prepare_examples`), each made once and kept under `cache_root()`, in a folder named by the
signature of what shapes it (`_signature`; the settings that change only the training on them,
`_TRAINING_ONLY`, are left out, so that runs differing in those share the examples).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from tagger import features as F
from tagger.data.nsynth import Note, NoteDataset
from tagger.errors import DatasetError, UserError
from tagger.model import synth as S
from tagger.model.settings import TrainSettings
from tagger.model.validation import ValidationSet

_TRAINING_ONLY = ("epochs", "batch_size", "learning_rate", "threads", "pretrain_steps", "trunk_filters", "pooling",
                  "mask_prob", "shift_prob", "shift_bands", "gate_cost", "threshold_resamples")
"""Settings that change the training but not the generated examples (reused across them)."""


def cache_root() -> Path:
    """Where training keeps its examples, pools and checkpoints: ``$TAGGER_CACHE``, else
    ``tagger/`` in the user's cache folder (`tagger.paths.cache_home`); a `UserError` when there is
    none (never the current folder)."""
    from tagger.paths import cache_home

    if os.environ.get("TAGGER_CACHE"):
        return Path(os.path.expanduser(os.environ["TAGGER_CACHE"])).absolute()
    base = cache_home()
    if base is None:
        raise UserError("no cache folder for training: $XDG_CACHE_HOME is not an absolute path and there is no home "
                        "folder; set TAGGER_CACHE to one")  # fmt: skip
    return Path(base) / "tagger"


def _signature(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _synth_signature(synth: S.SynthSettings) -> dict:
    """The synthesis settings that shape the examples; without timbre augmentation, chords, drum
    beats, sections, codecs or loud masters their settings are left out (so the examples cached
    before they existed are reused)."""
    d = asdict(synth)
    if not (synth.morph_prob or synth.warp_prob):
        for k in S.TIMBRE_SETTINGS:
            d.pop(k)
    for on, keys in ((synth.chord_prob, S.CHORD_SETTINGS), (synth.drum_prob, S.DRUM_SETTINGS),
                     (synth.section_prob, S.SECTION_SETTINGS), (synth.codec_prob, S.CODEC_SETTINGS),
                     (synth.master_prob, S.MASTER_SETTINGS)):
        if not on:
            for k in keys:
                d.pop(k)
    return d


@dataclass
class _Notes:
    """The notes a run trains and validates on (`_load_notes`)."""

    root: Path
    all_families: list[str]
    """The label columns, in order: the dataset's families, then new ones asked for."""
    wanted: list[str]
    """The families asked for (default: all)."""
    train: NoteDataset
    valid: NoteDataset
    left_out: NoteDataset | None
    """The left-out sources' instruments (``leave_out``), else None."""


@dataclass
class _Examples:
    """What a run trains and validates on, from the cache (`_prepare_examples`)."""

    cache: Path
    pool_sig: str
    ex_sig: str
    train_pool: S.NotePool
    valid_pool: S.NotePool
    x: np.ndarray
    """The training features (memory-mapped) [shape=(examples, bins, frames)]."""
    y: np.ndarray
    """Their labels [shape=(examples, len(all_families))]."""
    vs: ValidationSet
    vs_left_out: ValidationSet | None


def _load_notes(dataset_root: Path, settings: TrainSettings, families: Sequence[str] | None) -> _Notes:
    """The train and valid notes of the dataset, without the left-out sources and with the
    instrument share of `settings`; a `DatasetError` when a wanted family has no training notes."""
    train_split = None if settings.all_instruments else "train"
    all_families = list(NoteDataset.load(dataset_root, split="valid").families)
    all_families += [f for f in (families or []) if f not in all_families]
    # a new instrument: any instrument_family_str in the dataset can become a family
    train_ds = NoteDataset.load(dataset_root, split=train_split, families=all_families)
    valid_ds = NoteDataset.load(dataset_root, split="valid", families=all_families)
    left_out_ds = None
    if settings.leave_out:
        left_out_ds = _left_out_source(dataset_root, settings.leave_out, all_families)
        train_ds = _without_sources(train_ds, settings.leave_out)
        valid_ds = _without_sources(valid_ds, settings.leave_out)
    if settings.instrument_fraction < 1.0:
        train_ds = _instrument_share(train_ds, settings.instrument_fraction, seed=settings.seed)
    wanted = list(families) if families else all_families
    for f in wanted:
        if not any(n.family == f for n in train_ds.notes):
            raise DatasetError(dataset_root, f"no training notes for family {f!r} in the train split")
    return _Notes(dataset_root, all_families, wanted, train_ds, valid_ds, left_out_ds)


def _kept(ds: NoteDataset, keep: Callable[[Note], bool]) -> NoteDataset:
    """The dataset with only the notes and negatives that `keep` holds to."""
    return replace(ds, notes=[n for n in ds.notes if keep(n)], negatives=[n for n in ds.negatives if keep(n)])


def _without_sources(ds: NoteDataset, sources: Sequence[str]) -> NoteDataset:
    """The dataset without the notes of the given sources (``soundfont`` of the records)."""
    return _kept(ds, lambda n: n.soundfont not in sources)


def _instrument_share(ds: NoteDataset, fraction: float, *, seed: int) -> NoteDataset:
    """The dataset with `fraction` of each family's instruments (at least one), drawn with `seed`."""
    rng = np.random.default_rng([seed, 11])
    keep: set[str] = set()
    for family in sorted({n.family for n in ds.notes}):
        names = sorted({n.instrument for n in ds.notes if n.family == family})
        count = max(1, int(round(fraction * len(names))))
        keep.update(names[i] for i in rng.choice(len(names), size=count, replace=False))
    return replace(ds, notes=[n for n in ds.notes if n.instrument in keep])


def _left_out_source(root: Path, sources: Sequence[str], families: Sequence[str]) -> NoteDataset:
    """The instruments of `sources` in the train and valid splits (test instruments stay unseen)."""
    full = NoteDataset.load(root, families=families)
    ds = _kept(full, lambda n: n.soundfont in sources and n.split in ("train", "valid"))
    if not ds.notes:
        known = sorted({n.soundfont for n in full.notes if n.soundfont})
        raise DatasetError(root, f"no notes of {', '.join(sources)} to leave out (sources here: {', '.join(known)})")
    return ds


def _data_signature(notes: _Notes) -> str:
    """The signature of the dataset's notes and families (part of every cache signature)."""
    dataset_root = notes.root
    return _signature(
        {"dataset": str(dataset_root.resolve()), "examples_json_size": (dataset_root / "examples.json").stat().st_size,
         "split": (dataset_root / "split.json").read_text(), "families": notes.all_families}
    )  # fmt: skip


def _prepare_examples(notes: _Notes, settings: TrainSettings, synth: S.SynthSettings, fcfg: F.FeatureConfig, *,
                      data_sig: str, say: Callable[[str, dict], None]) -> _Examples:  # fmt: skip
    """The note pools, the training examples and the validation sets (and the left-out sources'),
    each from the cache under `cache_root()`, made and saved there the first time (deterministic for
    the seed; their signatures name what shapes them, not how they are trained on)."""
    train_ds, valid_ds, left_out_ds, all_families = notes.train, notes.valid, notes.left_out, notes.all_families
    cache = cache_root() / "train"
    pool_sig = _signature({"data": data_sig, "max": settings.max_notes_per_instrument, "seed": settings.seed,
                           "leave_out": sorted(settings.leave_out), "all": settings.all_instruments,
                           **({"share": settings.instrument_fraction} if settings.instrument_fraction < 1.0 else {})})  # fmt: skip
    say("pools", {"train_notes": len(train_ds.notes), "train_negatives": len(train_ds.negatives)})

    def pool(ds: NoteDataset, split: str) -> S.NotePool:
        return S.NotePool.build(ds, cache / f"pool-{split}-{pool_sig}", max_notes_per_instrument=settings.max_notes_per_instrument,
                                seed=settings.seed)  # fmt: skip

    train_pool, valid_pool = pool(train_ds, "train"), pool(valid_ds, "valid")
    # the examples depend on what generates them, not on how they are trained on
    gen = {k: v for k, v in asdict(settings).items() if k not in _TRAINING_ONLY}
    if settings.instrument_fraction == 1.0:
        gen.pop("instrument_fraction")  # (the signature of examples made before the setting existed)
    gen.pop("harmonic")  # (in the feature configuration below)
    ex_sig = _signature({"pool": pool_sig, "settings": gen, "synth": _synth_signature(synth), "features": fcfg.to_dict()})
    ex_dir = cache / f"examples-{ex_sig}"
    ex_dir.mkdir(parents=True, exist_ok=True)
    (ex_dir / "features.json").write_text(json.dumps(fcfg.to_dict(), sort_keys=True))  # what the cached arrays hold
    (ex_dir / "families.json").write_text(json.dumps(all_families))  # the label columns, in order
    if not (ex_dir / "train_x.npy").is_file():
        say("generate", {"examples": settings.examples, "recipe": settings.recipe})
        x, y = S.generate(
            train_pool.directory, count=settings.examples, seed=settings.seed, settings=synth, feature_config=fcfg,
            progress=lambda n: say("generated", {"n": n}),
        )  # fmt: skip
        np.save(ex_dir / "train_y.npy", y)
        np.save(ex_dir / "train_x.tmp.npy", x)
        os.replace(ex_dir / "train_x.tmp.npy", ex_dir / "train_x.npy")
    x = np.load(ex_dir / "train_x.npy", mmap_mode="r")
    y = np.load(ex_dir / "train_y.npy")
    mixture = S.SynthSettings(recipe="mixture")  # validation mixtures: the same whatever the training recipe

    def build_valid() -> ValidationSet:
        say("validation", {"per_level": settings.valid_per_level})
        return ValidationSet.build(valid_ds, valid_pool.directory, settings, fcfg, mixture)

    vs = ValidationSet.cached(ex_dir, build_valid)
    vs_left_out = None
    if left_out_ds is not None:

        def build_left_out() -> ValidationSet:
            say("validation", {"left_out": list(settings.leave_out), "notes": len(left_out_ds.notes)})
            return ValidationSet.build(left_out_ds, pool(left_out_ds, "left-out").directory, settings, fcfg, mixture)

        vs_left_out = ValidationSet.cached(ex_dir / "left_out", build_left_out)
    return _Examples(cache, pool_sig, ex_sig, train_pool, valid_pool, x, y, vs, vs_left_out)
