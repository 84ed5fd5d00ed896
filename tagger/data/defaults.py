"""The defaults of rendering and mixing note datasets, in a module without numpy: the options of
`tagger dataset render` and `tagger dataset mix` read them when any command starts, so that each
default is written once (`tagger.data.render`, `tagger.data.stk` and `tagger.data.mix` use them
under the same names)."""

from __future__ import annotations

from dataclasses import dataclass

NSYNTH_VELOCITIES = (25, 50, 75, 100, 127)
"""The MIDI velocities each pitch is rendered at (NSynth's)."""
NOTES_PER_VARIANT = 40
"""Notes rendered per STK variant (`tagger.data.stk.render_stk`)."""
VARIANTS_PER_VOICE = 3
"""Parameter variants (instruments) drawn per STK voice."""
MIXTURES_PER_LEVEL = 100
"""Mixtures per polyphony level of a mixture set (`tagger.data.mix.write_mixtures`; Table V's)."""


@dataclass(frozen=True)
class MixSettings:
    """Random ranges of the mixer (all draws come from one seeded generator)."""

    gain_db: tuple[float, float] = (-6.0, 0.0)
    """Relative gain of each note, uniform in dB."""
    max_onset_seconds: float = 0.0
    """Each note starts at a uniform offset in [0, max_onset_seconds] (0 = all together, as the paper)."""
    pitch_range: tuple[int, int] = (0, 127)
    velocities: tuple[int, ...] | None = None
    """Allowed velocities; None = any."""
