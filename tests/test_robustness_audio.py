"""Unusual audio content: float files of NaN, infinite or absurdly large samples, files that decode
only in part, files too short for their rate. Each is analysed right or is one clear error naming
the file; nothing non-finite reaches the database or the tags, and no file stops the scan."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select

from conftest import tone_signal, track_instruments, track_rows
from library_fakes import FREQ, FakeAnalyser
from tagger.db import models as M
from tagger.library.scan import scan

BASS = FREQ["bass"]
FLOAT_FORMATS = [("wav", "WAV"), ("aiff", "AIFF"), ("caf", "CAF")]


def stored_scores(db) -> list[float]:
    with db.session() as s:
        return list(s.scalars(select(M.Detection.score)))


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_files_of_huge_samples_are_analysed_as_their_shape(tmp_path, db, subtype):
    """Samples of 1e30 (finite, but their power overflows float32): the features are relative to
    the window's maximum, so the file is the bass tone it is (was: NaN scores, and the scan stopped
    at its first detection with `NOT NULL constraint failed: detections.score`)."""
    music = tmp_path / "music"
    music.mkdir()
    loud = tone_signal([BASS], seconds=6.0).astype(np.float64) * 1e30
    for ext, fmt in FLOAT_FORMATS:
        sf.write(str(music / f"loud.{ext}"), loud, 16_000, subtype=subtype, format=fmt)
    sf.write(str(music / "plain.wav"), tone_signal([BASS], seconds=6.0), 16_000)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0 and summary.scanned == 4, summary.errors
    assert all(found == ["bass"] for found in track_instruments(db).values()), track_instruments(db)
    assert all(math.isfinite(s) for s in stored_scores(db))
