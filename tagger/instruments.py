"""The instrument families and the presence label encoding of the paper's Table I.

A label is a presence array with one bit per family in the canonical order; all zeros means no
instrument. The registry is a plain ordered tuple so that a family can be appended later (the
One-vs-All design exists so a new instrument can be added without retraining the others); a
model manifest carries its own family list, which is what inference uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from tagger.errors import UserError

if TYPE_CHECKING:
    import numpy as np  # imported by the functions that build arrays: `tagger query` needs none

FAMILIES: tuple[str, ...] = (
    "bass",
    "brass",
    "flute",
    "guitar",
    "keyboard",
    "mallet",
    "organ",
    "reed",
    "string",
    "vocal",
)
"""The paper's 10 acoustic NSynth families, in the paper's order (synth_lead excluded)."""


def check_family(name: str, *, families: Sequence[str] = FAMILIES) -> str:
    """Return the canonical (lower-case) family name or raise `UserError` naming the choices."""
    key = name.strip().lower()
    if key not in families:
        raise UserError(f"unknown instrument family {name!r}; known families: {', '.join(families)}")
    return key


def encode(names: Iterable[str], *, families: Sequence[str] = FAMILIES) -> np.ndarray:
    """Encode family names as a presence array.

    Returns
    -------
    np.ndarray [shape=(len(families),), dtype=uint8]
        1 where the family is present, 0 elsewhere; all zeros for no instrument.
    """
    import numpy as np

    label = np.zeros(len(families), dtype=np.uint8)
    for name in names:
        label[list(families).index(check_family(name, families=families))] = 1
    return label


def decode(label: Sequence[int] | np.ndarray, *, families: Sequence[str] = FAMILIES) -> list[str]:
    """Decode a presence array into family names in canonical order."""
    import numpy as np

    arr = np.asarray(label)
    if arr.shape != (len(families),):
        raise UserError(f"a label must have {len(families)} entries, got shape {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise UserError(f"a label holds only 0 and 1, got {arr.tolist()}")
    return [f for f, bit in zip(families, arr) if bit]


def to_bits(label: Sequence[int] | np.ndarray) -> str:
    """The label as a bit string in family order, as the paper's Table I prints it ('0010000000')."""
    return "".join(str(int(b)) for b in label)


def from_bits(bits: str, *, families: Sequence[str] = FAMILIES) -> np.ndarray:
    """Parse a bit string written by `to_bits`."""
    if len(bits) != len(families) or set(bits) - {"0", "1"}:
        raise UserError(f"a label bit string has {len(families)} characters of 0/1, got {bits!r}")
    import numpy as np

    return np.array([int(c) for c in bits], dtype=np.uint8)


def canonical_order(names: Iterable[str], *, families: Sequence[str] = FAMILIES) -> list[str]:
    """Unique family names sorted into canonical order (validating each)."""
    present = {check_family(name, families=families) for name in names}
    return [f for f in families if f in present]
