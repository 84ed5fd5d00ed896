"""The typer application object and what every command shares (error rendering, logging)."""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import errno
import functools
import logging
import os
import re
import sys

import typer
import typer.core

from tagger.cli.options import name_values
from tagger.display import named, shown
from tagger.errors import TaggerError

class _Group(typer.core.TyperGroup):
    """The app's click group: a usage error (an unknown option or command, a bad or missing value) is
    one line on stderr, ``tagger: error: MESSAGE (see 'tagger CMD -h')``, the names in it escaped with
    `shown`, exit status 2 (click and typer's rich panel spread it over four to eight lines, wrapped
    mid-sentence at the terminal's width, a name in it printed raw)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _convert_without_pydantic(self)
        name_values(self)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # (click's exceptions, as typer vendors them)
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError":  # a group without its command: its help, as before
                echo(ctx.get_help(), err=True, lines=True)
            else:
                hint = f" (see '{ctx.command_path} {ctx.help_option_names[0]}')" if ctx is not None else ""
                flag = getattr(exc, "option_name", None)
                if flag in ("-v", "--verbose") and ctx is not None and ctx.parent is not None:
                    # (`tagger scan ~/Music -v`, as most tools take it: README's "-v log" did not say where)
                    # (the program as run, `python -m tagger` too: it said 'tagger -v -m tagger scan ...')
                    program = ctx.find_root().command_path
                    command = ctx.command_path[len(program):].strip()
                    hint = f" ({flag} is tagger's own option, given before the command: '{program} {flag} {command} " \
                        "...')"
                # (click escapes the control characters of the names it quotes, as `\\x1b`, and leaves
                # their backslashes: escaping those again would show a backslash the name has not)
                message = shown(exc.format_message().rstrip("."), keep_newlines=True).replace("\n", "\\x0a")
                echo(f"tagger: error: {message}{shown(hint)}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            echo("tagger: error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


_FAST_INT = re.compile(r"\s*[+-]?[0-9]+\s*")
_FAST_FLOAT = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*|\s*[+-]?(inf|nan)\s*", re.I)
"""Numbers read alike by Python and pydantic (which differ on "1_0" with blanks, or other digits)."""


def _plain_value(annotation, info, value):
    """``value`` converted to ``annotation`` as typer's pydantic adapter converts it, for the values
    where the two certainly agree (a str as a str, an ASCII number as Python reads it, a flag's
    bool, a list of str, a value given to the option's ``parser``); `_SLOW` for any other, which
    goes to typer's own conversion (its error messages included)."""
    import typing

    if typing.get_origin(annotation) is list and len(typing.get_args(annotation)) == 1:
        if not isinstance(value, (list, tuple)):
            return _SLOW
        items = [_plain_value(typing.get_args(annotation)[0], info, item) for item in value]  # (as typer: item by item)
        return _SLOW if any(item is _SLOW for item in items) else items
    if typing.get_origin(annotation) is not None:
        return _SLOW
    if info.parser is not None:
        try:
            return info.parser(value)
        except (ValueError, AssertionError):
            return _SLOW  # (typer words the message)
    if isinstance(value, bool):
        return value if annotation is bool else _SLOW
    if annotation is str and isinstance(value, str):
        return value
    if getattr(info, "min", None) is not None or getattr(info, "max", None) is not None:
        return _SLOW
    if annotation is float and isinstance(value, (int, float)):
        return float(value)
    if annotation is float and isinstance(value, str) and value.isascii() and _FAST_FLOAT.fullmatch(value):
        return float(value)
    if annotation is int and isinstance(value, str) and value.isascii() and _FAST_INT.fullmatch(value):
        return int(value)
    return _SLOW


_SLOW = object()

PLAIN_TYPER = (["0", "29"],)
"""The typer versions (major, minor) whose private conversion `_convert_without_pydantic` replaces."""


def _convert_without_pydantic(group) -> None:
    """Give every parameter of the commands of ``group`` a conversion that imports nothing: typer
    (0.29) converts each parameter's value with a pydantic ``TypeAdapter``, and importing pydantic
    and building them took 70-130 ms of every ``tagger query`` (a third of its start-up over the
    0.3 s budget). The values of our options (text, numbers, names, flags) are converted in plain
    Python as pydantic would (`_plain_value`); any other value still goes to typer's own
    conversion. Nothing is done with a typer that converts otherwise (the attributes are typer's
    private ones, so only the typer versions it was written and tested for, `PLAIN_TYPER`, get it:
    another one keeps its own conversion, slower but never broken; `tests/test_imports.py` checks
    that ``query`` loads no pydantic where it applies)."""
    if typer.__version__.split(".")[:2] not in PLAIN_TYPER:
        return
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
    except ImportError:
        return

    @dataclasses.dataclass(frozen=True)
    class Plain(RuntimeParam):
        def _coerce_value(self, value, param, ctx):
            converted = _plain_value(self.annotation, self.parameter_info, value)
            if converted is _SLOW:
                return build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)
            return converted

    def plain(param):
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is not None and getattr(param, "_runtime_param", False) is None:
            param._runtime_param = Plain(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation)
        return param

    commands = [group]
    while commands:
        command = commands.pop()
        commands += getattr(command, "commands", {}).values()
        for param in command.params:
            plain(param)
        command.get_help_option = functools.partial(_plain_help, made=command.get_help_option, plain=plain)


def _plain_help(ctx, *, made, plain):
    """The command's --help option (made for each run, its value None unless given), converted by `plain`."""
    option = made(ctx)
    return option if option is None else plain(option)


app = typer.Typer(
    cls=_Group,
    name="tagger",
    help="Listen to a music library and tag which instrument families play in every track.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
"""The app the command modules register their commands on, each when it is imported: it holds those
of the modules imported so far (`tagger.cli.main` imports only the invoked command's). Python code
takes ``tagger.cli.app``, which has every command (this one, taken from here by a test that ran
alone, had none: "No such command 'scan'")."""


class OutputError(TaggerError):
    """Standard output cannot be written: closed (``>&-``), a full disk (``> /dev/full``), a terminal
    that went away. What the command did before is done (a scan's results are stored before its
    summary is printed); the output is not all there, so the command fails."""


def standard_streams() -> None:
    """A standard file descriptor (0, 1, 2) that is closed (``tagger scan 2>&-``) is opened on
    /dev/null, so that the next file opened (the database, a music file) does not get its number and
    receive what a library or decoder writes there (libmpg123's messages, ONNX Runtime's warnings on
    fd 2). A closed stderr is then a silent one (``sys.stderr`` writes to /dev/null: tqdm and the
    decoders' fd 2 capture in `tagger.audio.plumbing` need one); a closed stdout stays ``sys.stdout is None``
    (Python's sign of it), which the commands report (`OutputError`). The processes
    tagger starts (scan workers, ffmpeg) inherit them. Called by `tagger.cli.main` first.

    A stream whose encoding is not UTF-8 (``PYTHONIOENCODING=latin-1``) writes a character it lacks
    as a ``\\u30cd`` escape, as `tagger.display.shown` writes what a terminal must not print (ネコ
    ended every command naming it in a UnicodeEncodeError traceback); `echo_data` writes the
    formats a script reads as UTF-8 bytes whatever the encoding."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)  # (os.open's are not: the workers and ffmpeg would find it closed again)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and codecs.lookup(getattr(stream, "encoding", None) or "utf-8").name != "utf-8":
            with contextlib.suppress(AttributeError, ValueError):  # (not a TextIOWrapper)
                stream.reconfigure(errors="backslashreplace")


def _write(write, *, err: bool) -> None:
    """Call ``write``, which writes to stderr (``err``) or stdout. A line stderr cannot take (closed,
    a full disk, a terminal gone, a reader that stopped) is dropped: there is nowhere left to say
    it, and the command goes on (a scan storing its results). stdout that cannot be written fails the
    command with an `OutputError` (stderr says why); a reader that stopped reading (``| head``) is
    typer's to handle: exit status 1 without a word. After a failure the stream writes to /dev/null,
    so that Python's last flush at exit does not print a traceback of its own."""
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        if err:
            return
        raise OutputError("cannot write to standard output: it is closed")
    try:
        write()
    except OSError as exc:
        if exc.errno == errno.EPIPE and not err:
            raise
        _silence(2 if err else 1)
        if not err:
            raise OutputError(f"cannot write to standard output: {exc.strerror or exc}") from None


def _silence(fd: int) -> None:
    """Point file descriptor ``fd`` at /dev/null (its stream's buffered text goes there at exit)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def echo(text: str = "", *, err: bool = False, nl: bool = True, lines: bool = False) -> None:
    """`typer.echo` of `shown` text: what every command prints goes through here. One line: a line
    break inside (a file name or tag value may hold one) is escaped too, unless ``lines``: text of
    several lines that tagger composed (a table, a report, JSON), whose names went through `shown`.
    A stream that cannot be written: see `_write`."""
    _write(lambda: typer.echo(shown(text, keep_newlines=lines), err=err, nl=nl), err=err)


def stdout_is_terminal() -> bool:
    return sys.stdout is not None and sys.stdout.isatty()


def stdout_encoding() -> str | None:
    """The encoding of standard output where it is not UTF-8 (``PYTHONIOENCODING=latin-1``: its
    stream writes a letter it lacks as an escape, `standard_streams`), else None."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return None if codecs.lookup(encoding).name == "utf-8" else encoding


def echo_data(text: str, *, end: str | None = "\n") -> None:
    """Output a script reads (bare paths, a playlist, CSV, JSON) on stdout: exactly as rendered, in
    UTF-8 as ``-o`` writes it (the bytes of the names on disk, whatever stdout's encoding), when
    stdout is a file or a pipe (``esc\\x1b[2J.flac`` there would name another file, or none), and
    escaped when stdout is a terminal: each entry (what ``end`` ends: a line, or a NUL-ended name)
    escaped whole by `tagger.display.named`, on a line of its own (a NUL shown as ``\\x00``);
    ``end`` None: text that escapes its own characters (JSON), escaped as `echo` ``lines`` escapes it."""
    if not stdout_is_terminal():  # (color=True: click would strip what looks like an ANSI sequence)
        data = text.encode("utf-8", "surrogateescape")  # the names' own bytes, whatever stdout's encoding
        _write(lambda: typer.echo(data, nl=False, color=True), err=False)
    elif end is None:
        echo(text, nl=False, lines=True)
    else:
        entries = text.split(end)
        shown_end = "" if end == "\n" else shown(end)
        last = [named(entries[-1])] if entries[-1] else []  # (text not ending with `end`)
        echo("".join(named(entry) + shown_end + "\n" for entry in entries[:-1]) + "".join(last), nl=False, lines=True)


NOTES_SHOWN = 5
"""Files named one by one in a note that repeats on every run (a format without tags); the rest are counted."""


def echo_some(lines: list[str], *, more: str) -> None:
    """The first `NOTES_SHOWN` of `lines` (to stderr), then ``... and N more {more}`` for the rest: a
    library of thousands of Matroska files must not bury the summary under as many lines."""
    for line in lines[:NOTES_SHOWN]:
        echo(line, err=True)
    if len(lines) > NOTES_SHOWN:
        echo(f"tagger: ... and {len(lines) - NOTES_SHOWN} more {more}", err=True)


class _ShownFormatter(logging.Formatter):
    """One event, one line: the message (file names in it) escaped with `shown`; a traceback keeps
    its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return shown(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return shown(super().formatException(ei), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return shown(super().formatStack(stack_info), keep_newlines=True)


def _version(value: bool) -> None:
    """``tagger --version``: tagger's version, then the models it uses (`tagger.model.verify.model_info`:
    every file's hash checked; a missing or tampered file is an error, exit status 1)."""
    if not value:
        return
    from tagger import __version__

    echo(f"tagger {__version__}")
    try:
        from tagger.model.verify import model_info

        info = model_info()
    except TaggerError as exc:
        raise fail(str(exc)) from None
    created = f", made {info.created}" if info.created else ""
    echo(f"models {info.version} (manifest sha256 {info.manifest_sha256[:16]}{created}) in {info.model_dir}")
    # (the database names them by another hash, of the manifest's content: `tagger stats` shows that one)
    echo(f"library databases name them {info.version} with manifest_hash {info.manifest_hash[:16]} (tagger stats)")
    raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging on stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, expose_value=False,
                                 help="Print tagger's version and its models' (version, manifest sha256, folder, and the manifest_hash a library database records for them)."),
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ShownFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error line on stderr and return the Exit to raise."""
    echo(f"tagger: error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(func):
    """Render our own errors as one clear line instead of a traceback: exit code 1, or the error's
    ``exit_code`` (an interrupted scan: 128 + the signal number). A command refuses to start where
    Python does not read file names as UTF-8 (`tagger.paths.check_filesystem_encoding`). Where the
    current folder no longer exists, a command given absolute paths runs (a scan refuses before it
    starts: its workers need the folder), and one given a relative path, which names nothing there,
    refuses before it starts with the one line of `tagger.paths.check_working_folder` (not 'no such
    file or folder', where the folder may be there again under its name), as one that reads a
    relative name in another way ends in it, not in a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from tagger.paths import check_filesystem_encoding, check_working_folder

        try:
            check_filesystem_encoding()
            if _relative_path_given(kwargs):
                check_working_folder()  # (a name the command checks itself: 'no such file or folder' otherwise)
            try:
                return func(*args, **kwargs)
            except FileNotFoundError:
                check_working_folder()  # (a relative name read against a folder that is gone: say that)
                raise
        except TaggerError as exc:
            raise fail(str(exc), getattr(exc, "exit_code", 1)) from None
        except KeyboardInterrupt as exc:
            from tagger.signals import exit_status

            raise fail("interrupted", exit_status(exc)) from None
        except Exception as exc:
            # A database error no command turned into ours (they name the database): still one line.
            from tagger.db.urls import driver_reason, is_driver_error

            if not is_driver_error(exc):
                raise

            raise fail(f"database error: {driver_reason(exc)}", 1) from None

    return wrapper


def _relative_path_given(kwargs: dict) -> bool:
    """Whether a command's arguments hold a relative path (a file or folder argument or option,
    `tagger.cli.options.path`: a `Path`, alone or in a list)."""
    from pathlib import PurePath

    for value in kwargs.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, PurePath) and not item.is_absolute():
                return True
    return False


def quiet_tensorflow() -> None:
    """`tagger.model.backends.quiet_tensorflow`, imported only by the commands that call it: that
    module imports numpy, which `tagger --help` and `tagger query` do not need."""
    from tagger.model.backends import quiet_tensorflow as quiet

    quiet()


def quiet_tensorflow_for(models) -> None:
    """`quiet_tensorflow` before loading the model directory `models` (None: the default one), only
    when loading it will import TensorFlow: the Keras runtime, or a graph not yet exported to ONNX.
    A scan whose export is cached starts without TensorFlow (about 4 s and 600 MB of the main
    process); a wrong guess costs only TensorFlow's start-up chatter, never a result."""
    from tagger.model import backends as B
    from tagger.model.folders import default_model_dir
    from tagger.model.manifest import export_key, read_manifest

    try:
        key = export_key(read_manifest(models if models is not None else default_model_dir()))
        cached = B.loads_without_tensorflow(key)  # (the backend's to say: `Backend.without_tensorflow`)
    except Exception:  # noqa: BLE001  (a bad directory is reported by the load itself)
        cached = False
    if not cached:
        quiet_tensorflow()
