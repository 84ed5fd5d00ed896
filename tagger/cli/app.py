"""The typer application object and what every command shares (error rendering, logging)."""

from __future__ import annotations

import functools
import logging
import sys

import typer

from tagger.errors import TaggerError

app = typer.Typer(
    name="tagger",
    help="Listen to a music library and tag which instrument families play in every track.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging on stderr.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error line on stderr and return the Exit to raise."""
    typer.echo(f"tagger: error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(func):
    """Render our own errors as one clear line instead of a traceback: exit code 1, or the error's
    ``exit_code`` (an interrupted scan: 128 + the signal number)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TaggerError as exc:
            raise fail(str(exc), getattr(exc, "exit_code", 1)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def quiet_tensorflow() -> None:
    """Import TensorFlow without its start-up chatter on stderr (call it before anything imports TF).

    Its C++ log lines are off (``TF_CPP_MIN_LOG_LEVEL=3``: real failures raise anyway); on Linux
    without an NVIDIA driver CUDA is not probed (``CUDA_VISIBLE_DEVICES=""``, whose failed
    ``cuInit`` is logged as an error); and what its libraries print before their logging is set up
    is caught during the import, shown only if the import fails. Values the user set are kept."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if sys.platform.startswith("linux") and "CUDA_VISIBLE_DEVICES" not in os.environ:
        if not os.path.exists("/proc/driver/nvidia"):
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            failed = True  # the command that needs it says so
        else:
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if failed:
            caught.seek(0)
            sys.stderr.write(caught.read().decode("utf-8", "replace"))
