"""Analysers for the Dask tests, importable by the worker processes (``dask_fakes:...``)."""

from __future__ import annotations

import os

from library_fakes import FakeAnalyser


class CrashingAnalyser(FakeAnalyser):
    """The FakeAnalyser, except that the worker process dies (as on a decoder segfault) when a file
    has exactly `crash_windows` non-silent windows."""

    def __init__(self, *, crash_windows: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.crash_windows = crash_windows

    def predict_features(self, feats):
        if len(feats) == self.crash_windows:
            os._exit(3)
        return super().predict_features(feats)
