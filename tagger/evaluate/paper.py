"""The paper's published numbers, in one place (reports and the README put ours next to them).

Chen, Ghobakhlou, Narayanan, "Musical Instrument Recognition in Polyphonic Audio through
Convolutional Neural Network and Spectrograms": Table VI (solo test) and Table V / Fig. 6
(polyphony levels 0..10). Values are fractions, as our reports store them.
"""

from __future__ import annotations

SOLO_ACCURACY = 0.97
"""Table VI: accuracy of the ensemble on single NSynth test notes."""

LEVEL_ACCURACY: dict[int, float] = {
    0: 1.00, 1: 0.97, 2: 0.77, 3: 0.71, 4: 0.62, 5: 0.58, 6: 0.53, 7: 0.48, 8: 0.45, 9: 0.43, 10: 0.37,
}  # fmt: skip
"""Table V: multilabel (Jaccard) accuracy per polyphony level."""

LEVEL_EMR: dict[int, float] = {
    0: 1.00, 1: 0.79, 2: 0.04, 3: 0.02, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.0, 8: 0.0, 9: 0.0, 10: 0.0,
}  # fmt: skip
"""Table V: exact match ratio per polyphony level (0 from level 4 on)."""

OVERALL_ACCURACY = 0.64
"""The paper's overall multilabel accuracy (mean over levels, as published; the mean of the rounded
per-level values above is 0.628)."""

OVERALL_EMR = 0.17
"""The paper's overall exact match ratio (mean over levels)."""

CITATION = (
    "Chen, Ghobakhlou, Narayanan: Musical Instrument Recognition in Polyphonic Audio through "
    "Convolutional Neural Network and Spectrograms"
)


def as_dict() -> dict:
    """The published numbers as one JSON-ready record."""
    return {
        "citation": CITATION,
        "solo_accuracy": SOLO_ACCURACY,
        "level_accuracy": {str(k): v for k, v in LEVEL_ACCURACY.items()},
        "level_emr": {str(k): v for k, v in LEVEL_EMR.items()},
        "overall_accuracy": OVERALL_ACCURACY,
        "overall_emr": OVERALL_EMR,
    }
