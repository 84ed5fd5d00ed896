"""The test session writes into none of the user's caches: `conftest.py` gives it a folder of its
own (the ONNX exports of the models the tests train went into ``~/.cache/tagger/runtime`` before)."""

import tempfile
from pathlib import Path

from tagger.model import runtime as R
from tagger.model import train as T


def test_the_session_caches_are_not_the_users():
    users = Path("~/.cache").expanduser().resolve()
    temp = Path(tempfile.gettempdir()).resolve()
    for folder in (R.cache_dir(), T.cache_root()):
        assert not folder.resolve().is_relative_to(users), folder
        assert folder.resolve().is_relative_to(temp), folder
