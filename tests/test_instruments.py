import numpy as np
import pytest

from tagger import instruments as I
from tagger.errors import UserError


def test_paper_order_and_table_i_encoding():
    assert I.FAMILIES == ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "vocal")
    assert I.to_bits(I.encode(["flute"])) == "0010000000"
    assert I.to_bits(I.encode(["vocal", "bass"])) == "1000000001"
    assert I.to_bits(I.encode([])) == "0000000000"


def test_round_trip_and_canonical_order():
    label = I.encode(["string", "Guitar", "bass"])
    assert label.dtype == np.uint8 and label.tolist() == [1, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert I.decode(label) == ["bass", "guitar", "string"]
    assert I.decode(I.from_bits("0000000000")) == []
    assert I.canonical_order(["vocal", "flute", "vocal"]) == ["flute", "vocal"]


@pytest.mark.parametrize("bad", ["synth_lead", "drums", ""])
def test_unknown_names_rejected_with_choices(bad):
    with pytest.raises(UserError, match="unknown instrument family.*known families: bass"):
        I.encode([bad])


def test_bad_labels_rejected():
    with pytest.raises(UserError):
        I.decode([1, 0, 1])
    with pytest.raises(UserError):
        I.decode([2] + [0] * 9)
    with pytest.raises(UserError):
        I.from_bits("00100")


def test_registry_accepts_an_added_family():
    fams = I.FAMILIES + ("harp",)
    label = I.encode(["harp", "bass"], families=fams)
    assert len(label) == 11 and I.decode(label, families=fams) == ["bass", "harp"]
