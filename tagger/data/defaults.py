"""The defaults of rendering and mixing note datasets, in a module without numpy: the options of
`tagger dataset render` and `tagger dataset mix` read them when any command starts, so that each
default is written once (`tagger.data.render`, `tagger.data.stk` and `tagger.data.mix` use them
under the same names)."""

from __future__ import annotations

import math
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

    def __post_init__(self) -> None:
        """Refuse ranges the mixer cannot draw from (a `UserError` naming the setting and the option of
        `tagger dataset mix` that sets it, the only caller giving other values): a gain range
        upside down, an onset past the window (the note would be left out of its mixture while its
        label says it is there), pitches or velocities outside MIDI's 0-127."""
        from tagger.constants import WINDOW_SECONDS
        from tagger.errors import UserError

        low, high = self.gain_db
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise UserError(f"gain range {low:g},{high:g} dB (--gain-db): expected 'low,high' with low <= high")
        if not 0 <= self.max_onset_seconds < WINDOW_SECONDS:
            raise UserError(f"maximum onset {self.max_onset_seconds:g} s (--max-onset): expected at least 0 and "
                            f"under the {WINDOW_SECONDS:g} s window (a note starting later is not in its mixture, "
                            "yet its label would say it is)")  # fmt: skip
        low, high = self.pitch_range
        if not 0 <= low <= high <= 127:
            raise UserError(f"pitch range {low},{high} (--pitch-range): expected 'low,high' MIDI pitches, "
                            "0 <= low <= high <= 127")  # fmt: skip
        if self.velocities is not None and not all(0 <= v <= 127 for v in self.velocities):
            raise UserError(f"velocities {','.join(map(str, self.velocities))} (--velocities): expected MIDI "
                            "velocities (0-127)")  # fmt: skip
