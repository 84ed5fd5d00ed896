"""The settings of a training (`TrainSettings`) and of its examples (`SynthSettings`), in a module
without numpy: `tagger train`'s options take their defaults from these fields (`tagger.cli.options.
default`), so each default is written once, here, and every command starts without importing the
training stack. `tagger.model.train` and `tagger.model.synth` use them under the same names."""

from __future__ import annotations

from dataclasses import dataclass, replace

from tagger.constants import GATE_COST
from tagger.errors import UserError

TRUNK_FILTERS = (24, 48, 96, 192, 192)
"""The shared trunk's filters of its conv blocks (`tagger.model.architectures.build_trunk`)."""

LEVEL_WEIGHTS = (0.6, 1.3, 1.3, 1.2, 1.1, 1.0, 0.9, 0.9, 0.8, 0.8, 0.8)
"""The default `SynthSettings.level_weights`: mixtures of 0 to 10 families; each family beyond ten
adds a mixture of one more, weighted as the last (`SynthSettings.level_weights_for`)."""


@dataclass(frozen=True)
class SynthSettings:
    recipe: str = "mixture"
    level_weights: tuple[float, ...] = LEVEL_WEIGHTS
    """Relative frequency of mixtures with 0, 1, ... families: one weight more than the families
    trained (`for_families`); the default, `LEVEL_WEIGHTS`, follows their number."""
    gain_db: tuple[float, float] = (-12.0, 0.0)
    aligned_share: float = 0.5
    """Share of family entries played as one whole note at time 0 (the paper's protocol)."""
    negative_prob: float = 0.4
    """Chance that a mixture also holds non-family sounds (always for level 0 unless silent)."""
    silent_level0_prob: float = 0.15
    reverb_prob: float = 0.3
    noise_prob: float = 0.3
    eq_prob: float = 0.6
    solo_negative_share: float = 0.25
    """solo recipe: share of examples that are negatives or silence."""
    morph_prob: float = 0.0
    """Chance that a family entry takes part of the spectral envelope of another instrument of its family."""
    warp_prob: float = 0.0
    """Chance that a family entry's spectral envelope is stretched along frequency (pitch unchanged)."""
    morph_amount: tuple[float, float] = (0.3, 1.0)
    """How far towards the other instrument's envelope a morph goes (uniform)."""
    warp_semitones: float = 4.0
    """Largest envelope stretch, as a frequency ratio in semitones (uniform in +-)."""
    chord_prob: float = 0.0
    """Chance that a note a family entry plays is a chord: 2-4 notes of the same instrument at once."""
    drum_prob: float = 0.0
    """Chance that a drum kit plays a beat under an example (besides the other non-family sounds)."""
    section_prob: float = 0.0
    """Chance that a note a family entry plays is a section: 2-6 players of its family on one pitch."""
    codec_prob: float = 0.0
    """Chance that a finished example is sent through a lossy codec (MP3, AAC, Opus, Vorbis; `lossy`)."""
    master_prob: float = 0.0
    """Chance that a finished example is mastered loud: raised 3-18 dB, then clipped or limited (`mastering`)."""

    def level_weights_for(self, families: int) -> tuple[float, ...]:
        """`level_weights` for mixtures of up to ``families`` families: the default's (`LEVEL_WEIGHTS`)
        with its last weight once more for each family beyond ten; weights given otherwise as given."""
        if self.level_weights != LEVEL_WEIGHTS or families < len(LEVEL_WEIGHTS):
            return self.level_weights
        return LEVEL_WEIGHTS + LEVEL_WEIGHTS[-1:] * (families + 1 - len(LEVEL_WEIGHTS))

    def for_families(self, families: int) -> SynthSettings:
        """These settings for a training whose mixtures draw from ``families`` families (the label's
        columns: the dataset's, however few heads it trains): the default level weights extended to
        mixtures of all of them (`level_weights_for`; up to ten families: these settings unchanged).
        Weights given otherwise must be one for each number of families, 0 to ``families`` (a list
        written for ten would leave an eleventh family out of every mixture of all): `UserError`
        naming --level-weights when they are not."""
        if self.level_weights == LEVEL_WEIGHTS:
            weights = self.level_weights_for(families)
            return self if weights == self.level_weights else replace(self, level_weights=weights)
        if len(self.level_weights) != families + 1:
            given = len(self.level_weights)
            raise UserError(f"--level-weights gives {given} weights, for mixtures of 0 to {given - 1} families; this "
                            f"training mixes {families} families (the dataset's, whichever --family it trains): give "
                            f"{families + 1}, one for each number of families from 0 (0 for a number never drawn)")  # fmt: skip
        return self


@dataclass(frozen=True)
class TrainSettings:
    architecture: str = "trunk"
    recipe: str = "mixture"
    examples: int = 60_000
    epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0
    max_notes_per_instrument: int = 150
    valid_per_level: int = 100
    valid_music_examples: int = 2_000
    valid_solo_notes: int = 2_000
    aggregation_tracks: int = 300
    """Synthetic validation tracks used to calibrate the per-track aggregation rule."""
    threads: int = 0
    """TensorFlow intra-op threads (0 = all cores)."""
    leave_out: tuple[str, ...] = ()
    """Sources (the ``soundfont`` of the notes, e.g. 'generaluser') left out of training altogether;
    their instruments of the train and valid splits become a second validation set (leave-one-source-out)."""
    all_instruments: bool = False
    """A production fit: train on the instruments of every split (validation figures are then on
    instruments seen in training and are not a measure of generalisation)."""
    instrument_fraction: float = 1.0
    """Train on this share of the training instruments only (drawn per family with the seed; the
    non-family sounds are all kept): an ablation that measures what more instruments are worth."""
    trunk_filters: tuple[int, ...] = TRUNK_FILTERS
    """Shared trunk only: filters of its conv blocks (the embedding is twice the last)."""
    pooling: str = "max"
    """Shared trunk only: how it halves its maps between conv blocks (`architectures.downsample`):
    ``max`` (2x2 max-pool) or ``blur`` (anti-aliased max-pool)."""
    pretrain_steps: int = 0
    """Shared trunk only: supervised contrastive pretraining steps on instrument identity before the
    mixture training (`tagger.model.pretrain`); 0 = none."""
    mask_prob: float = 0.0
    """Chance that a training example's spectrogram has bands and stretches masked (`spec_mask`,
    SpecAugment): the network must recognise a family from what is left of its sound."""
    shift_prob: float = 0.0
    """Chance that a training example's spectrogram is shifted up or down by 1 to `shift_bands` mel
    bands (`spec_shift`): the trunk's 2x2 max-pools make its scores depend on where a spectral
    envelope sits against their grid, which says nothing of the instrument."""
    shift_bands: int = 2
    """The largest shift of `shift_prob`, in mel bands."""
    harmonic: bool = False
    """Train on the harmonic part of the spectrogram only (`FeatureConfig.harmonic`: drum hits damped);
    recorded in the manifest, so inference uses the same front end."""
    threshold_resamples: int = 0
    """With resamples (e.g. 500), each family's threshold is the most precise within one bootstrap
    standard error of its F0.5-best (`family_threshold`, `tagger combine --one-se-thresholds`); 0:
    the F0.5-best itself."""
    gate_cost: float = GATE_COST
    """Shared trunk only: the presence gate (`tagger.model.gate`) may turn down this share of the
    validation windows that hold a family; 0 = no gate."""
