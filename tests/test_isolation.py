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


def test_a_test_leaving_sigint_ignored_is_named_with_what_it_changed(tmp_path):
    """`conftest`'s check after every test names what a test left changed for the tests after it
    (one that left SIGINT ignored would make a later test of Ctrl-C fail in the whole suite only),
    and sets it back; whatever SIGINT was when the suite started."""
    import os
    import signal

    from conftest import _changes, _process_state, _restore_process_state

    given = signal.signal(signal.SIGINT, signal.default_int_handler)  # (whatever started the suite)
    try:
        before = _process_state()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.environ["TAGGER_LEFT_BEHIND"] = "1"
        os.chdir(tmp_path)
        changed = _changes(before, _process_state())
        _restore_process_state(before)
        assert _changes(before, _process_state()) == []
    finally:
        signal.signal(signal.SIGINT, given)
    assert [c.split(":")[0] for c in changed] == ["signal handlers", "working folder", "environment"], changed
    assert changed[0] == "signal handlers: SIGINT <built-in function default_int_handler> -> <Handlers.SIG_IGN: 1>"
    assert changed[2] == "environment: TAGGER_LEFT_BEHIND '(unset)' -> '1'"
