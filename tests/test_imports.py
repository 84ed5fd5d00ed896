"""The package's import structure: the library never imports the CLI, and nothing imports in a circle.

Every ``.py`` under ``tagger/`` is parsed (not imported) and each import statement, at module level
or inside a function, becomes an edge of the module graph. Two views are checked for cycles: the
modules themselves, and the units of the layout (a subpackage such as ``tagger.model`` counts as
one unit, a top-level module such as ``tagger.tags`` as another).
"""

from __future__ import annotations

import ast
import importlib
import re
from collections import defaultdict
from pathlib import Path

import pytest
import typer

import tagger

ROOT = Path(tagger.__file__).resolve().parent

def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = ["tagger", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The tagger modules that module `name` imports anywhere in its body (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from tagger.model import runtime` imports the module tagger.model.runtime
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import tagger.x.y as z`, `from m import function`
                target = target.rpartition(".")[0]
            if target.startswith("tagger") and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _unit(module: str) -> str:
    """The layout unit of a module: its subpackage (tagger.model) or the top-level module itself."""
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _unit_graph(graph: dict[str, set[str]], *, leave_out: frozenset[str] = frozenset()) -> dict[str, set[str]]:
    units: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph.items():
        for b in targets:
            ua, ub = _unit(a), _unit(b)
            if ua != ub and ua != "tagger" and ub != "tagger" and frozenset({ua, ub}) not in leave_out:
                units[ua].add(ub)
    return units


def test_the_graph_sees_module_and_function_level_imports():
    graph = _graph()
    assert "tagger.model.manifest" in graph["tagger.model.store"]  # module level
    assert "tagger.model.calibrate" in graph["tagger.model.train"]  # inside train_ensemble
    assert "tagger.model.runtime" in graph["tagger.model.backends"]  # `from tagger.model import runtime as R`
    assert "tagger.evaluate.metrics" in graph["tagger.model.train"]


def test_no_module_outside_the_cli_imports_the_cli():
    offenders = {m: sorted(t for t in ts if _unit(t) == "tagger.cli") for m, ts in _graph().items() if _unit(m) != "tagger.cli"}
    offenders.pop("tagger.__main__", None)  # `python -m tagger` runs the CLI
    assert {m: ts for m, ts in offenders.items() if ts} == {}


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def test_no_import_cycles_between_subpackages():
    # e.g. library -> db and library -> tags, never back: the crawler and the fingerprint, which
    # all three use, live at the top level
    assert _cycles(_unit_graph(_graph())) == []


def test_every_subpackage_ships_in_the_wheel():
    """`pip install .` installs only the packages pyproject lists: a new subpackage must be there."""
    import tomllib

    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    subpackages = {".".join(("tagger", *p.parent.relative_to(ROOT).parts)) for p in ROOT.rglob("__init__.py")}
    assert "tagger.tags" in subpackages and subpackages <= listed


def test_every_shipped_model_file_ships_in_the_wheel():
    """The package data of tagger.models names every file of models/, an averaged ensemble's members too."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tagger.models"]
    models = ROOT.parent / "models"
    files = [p.relative_to(models).as_posix() for p in models.rglob("*") if p.is_file()]
    assert "manifest.json" in files
    unshipped = [f for f in files if not any(fnmatch.fnmatchcase(f, pat) and f.count("/") == pat.count("/") for pat in patterns)]
    assert unshipped == []


# -- what the fast commands import -------------------------------------------------------------------
NOT_FOR_FAST_COMMANDS = ("numpy", "scipy", "librosa", "soundfile", "mutagen", "alembic", "onnxruntime", "tensorflow",
                         "keras", "matplotlib", "tqdm", "pydantic")  # fmt: skip
if typer.__version__.split(".")[:2] not in importlib.import_module("tagger.cli.app").PLAIN_TYPER:
    NOT_FOR_FAST_COMMANDS = NOT_FOR_FAST_COMMANDS[:-1]  # (another typer keeps its own conversion, with pydantic)
"""What `tagger --help`, `query`, `show` (without ``--plot``), `stats` and `errors` never need: each
cost tens of milliseconds (numpy 40-80 ms; pydantic, which typer 0.29 converts every option's value
with, 70-130 ms: `tagger.cli.app._convert_without_pydantic`) to seconds (TensorFlow) of a command
run many times a day."""


@pytest.fixture(scope="module")
def small_library(tmp_path_factory):
    from benchmarks.bench import synth_database

    return str(synth_database(tmp_path_factory.mktemp("lib") / "library.db", tracks=24))


def _imported_by(*args: str, modules: bool = False) -> set[str]:
    """The top-level packages loaded by a whole ``python -m tagger ARGS`` process (exit code 0);
    ``modules``: every module's full name."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, runpy, sys\n"
        f"sys.argv = ['tagger', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_module('tagger', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "print('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n"
    )
    # the tagger under test, whatever the working folder (``python -c`` puts it first on the path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT.parent), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT.parent)
    assert r.returncode == 0, r.stderr
    loaded = set(json.loads(r.stdout.rpartition("\nMODULES ")[2]))
    return loaded if modules else {m.split(".")[0] for m in loaded}


@pytest.mark.integration
def test_help_imports_neither_the_database_nor_the_audio_stack():
    loaded = _imported_by("--help")
    assert loaded.isdisjoint({*NOT_FOR_FAST_COMMANDS, "sqlalchemy"}), sorted(loaded & {*NOT_FOR_FAST_COMMANDS, "sqlalchemy"})
    assert "tagger" in loaded and "typer" in loaded


@pytest.mark.integration
@pytest.mark.parametrize(
    "command",
    [
        ["query", "--help"],
        ["query", "--has", "flute", "--lacks", "vocal"],
        ["query", "--has", "organ", "--format", "json"],
        ["query", "--has", "bass", "--format", "m3u"],
        ["query", "--has", "bass", "--format", "csv"],
        ["show", "/music/artist-000/album-0000/01 track 0.flac"],
        ["show", "/music/artist-000/album-0000/01 track 0.flac", "--json"],
        ["stats"],
        ["errors"],
    ],
    ids=" ".join,
)
def test_fast_commands_do_not_import_numpy_or_the_models(small_library, command):
    loaded = _imported_by(*command, *([] if "--help" in command else ["--db", small_library]))
    assert loaded.isdisjoint(NOT_FOR_FAST_COMMANDS), sorted(loaded & set(NOT_FOR_FAST_COMMANDS))
    if "--help" not in command:
        assert "rich" not in loaded  # (the check sees the command's run: rich only formats help)
        # (these commands read a SQLite library through sqlite3 alone: SQLAlchemy with its SQLite
        # dialect was about half of the whole process's instructions)
        assert "sqlalchemy" not in loaded, sorted(loaded)


@pytest.mark.integration
def test_query_into_a_file_does_not_import_numpy(small_library, tmp_path):
    """`query -o`'s check of the name against the system's devices read the mount table through
    `tagger.crawl`, which imports numpy (with `tagger.audio`): it reads it through `tagger.paths`."""
    loaded = _imported_by("query", "--format", "m3u", "-o", str(tmp_path / "list.m3u"), "--db", small_library)
    assert loaded.isdisjoint(NOT_FOR_FAST_COMMANDS), sorted(loaded & set(NOT_FOR_FAST_COMMANDS))
    assert (tmp_path / "list.m3u").read_text(encoding="utf-8").startswith("#EXTM3U")


@pytest.mark.integration
@pytest.mark.parametrize("command", [["query", "--has", "bass"], ["query", "-f", "json"], ["query", "-f", "csv"], ["stats"],
                                     ["errors"], ["show", "/music/artist-000/album-0000/01 track 0.flac"],
                                     ["show", "/music/artist-000/album-0000/01 track 0.flac", "--json"]], ids=" ".join)  # fmt: skip
def test_query_stats_and_errors_read_without_the_orm(small_library, command):
    """``tagger query``, ``stats``, ``errors`` and ``show`` (without ``--plot``) read a SQLite
    library through ``sqlite3`` alone (`tagger.db.session.open_for_reading`, SQL text of
    `tagger.db.sql`): neither SQLAlchemy (its ORM and the mapped classes of `tagger.db.models` were
    left out before, about 80 ms of each run; then its Core, about half of the rest) nor Alembic."""
    loaded = _imported_by(*command, "--db", small_library, modules=True)
    assert "tagger.db.sql" in loaded and not {m for m in loaded if m.split(".")[0] in ("sqlalchemy", "alembic")}
    assert "tagger.db.tables" not in loaded and "tagger.db.models" not in loaded
    if command[0] == "query":  # (a track's detail, `show`'s, and the evaluation's rendering: 2-7 ms of a query's start-up)
        assert {"tagger.db.detail", "tagger.evaluate.render"}.isdisjoint(loaded), sorted(loaded)


@pytest.mark.integration
@pytest.mark.parametrize("command, module", [(["query", "--has", "flute", "--lacks", "vocal"], "library"),
                                             (["db", "prune", "--help"], "db")], ids=lambda c: " ".join(c) if isinstance(c, list) else c)  # fmt: skip
def test_a_command_imports_no_other_commands_module(small_library, command, module):
    """A run imports only the module of the command it invokes (`tagger.cli.COMMANDS`): every
    command module was imported to register its commands, with their own imports (``tagger.model.settings``,
    ``tagger.data.defaults``, json), about 9 ms of each ``tagger query``."""
    from tagger.cli import COMMANDS

    loaded = _imported_by(*command, *([] if "--help" in command else ["--db", small_library]), modules=True)
    assert {f"tagger.cli.{m}" for m in COMMANDS.values()} & loaded == {f"tagger.cli.{module}"}


def test_the_command_table_names_every_command_and_its_module():
    """`tagger.cli.COMMANDS` (what a run imports for the command it names) holds every command and
    group the app registers, in the order ``tagger --help`` lists them, each with its module. Every
    module of `tagger.cli` is imported first: a command module the table does not name is imported
    by nothing else (its commands missing from every run, ``tagger --help`` too), and whether a test
    before this one had imported it decided whether this test saw its commands."""
    import pkgutil

    import tagger.cli as cli

    for module in pkgutil.iter_modules(cli.__path__):
        importlib.import_module(f"tagger.cli.{module.name}")
    app = cli.app
    assert [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups] == list(cli.COMMANDS)
    for c in app.registered_commands:
        assert c.callback.__module__ == f"tagger.cli.{cli.COMMANDS[c.name]}", c.name
    for g in app.registered_groups:
        assert g.typer_instance.registered_commands[0].callback.__module__ == f"tagger.cli.{cli.COMMANDS[g.name]}", g.name


def test_python_code_takes_the_app_with_every_command():
    """Python code (tests, scripts, benchmarks, the beets plugin, the library) takes the app as
    ``tagger.cli.app``, which has every command; ``tagger.cli.app.app``, the object the command
    modules register on, holds only those of the modules imported so far (`tagger.cli.main` imports
    the invoked command's alone): a test that took it from there passed in the whole suite and
    failed run alone, "No such command 'scan'"."""
    repository = ROOT.parent
    offenders = []
    for folder in ("tagger", "tests", "scripts", "benchmarks", "beetsplug"):
        for path in sorted((repository / folder).rglob("*.py")):
            text = path.read_text()
            if path.parent == ROOT / "cli" or not re.search(r"tagger\s*\.\s*cli\s*\.\s*app", text):
                continue  # (the command modules register on it; a file that never names the module is not parsed: 3.5 s of parsing, 0.2 s)
            for node in ast.walk(ast.parse(text, filename=str(path))):
                if isinstance(node, ast.ImportFrom) and node.module == "tagger.cli.app" and any(a.name == "app" for a in node.names):
                    offenders.append(f"{path.relative_to(repository)}:{node.lineno}")
    assert offenders == []


def test_typer_s_own_cli_finds_the_app_with_every_command():
    """``typer tagger.cli run`` and ``typer tagger.cli utils docs`` run the package's code in a copy
    outside sys.modules, then take the Typer object named ``app`` in its ``dir()``: the package
    ended in KeyError: 'app' (its import of `tagger.cli.app` bound nothing on the copy), as it would
    have run again by `importlib.reload`; and with ``app`` not in ``dir()``, typer took the first
    Typer object it found, the app without the commands not yet imported."""
    import importlib.util

    pytest.importorskip("typer.cli")
    from typer.cli import get_typer_from_module

    import tagger.cli as cli

    spec = importlib.util.find_spec("tagger.cli")
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    spec.loader.exec_module(copy)  # (again, as a reload runs it)
    assert "app" in dir(copy) and "app" in dir(cli)
    found = get_typer_from_module(copy)
    assert found is cli.app and [c.name for c in found.registered_commands] + [g.name for g in found.registered_groups] == list(cli.COMMANDS)


def test_options_are_converted_without_pydantic_as_typer_converts_them():
    """typer 0.29 converts every option's value with a pydantic adapter (pydantic's import and the
    adapters: 70-130 ms of each ``tagger query``); `_plain_value` converts the values of our options
    in plain Python, to what typer's adapter gives, and hands every other value to typer."""
    import math
    import sys

    pytest.importorskip("typer._adapters")
    from typer._adapters import try_build_adapter
    from typer.models import OptionInfo

    import tagger.cli.app  # noqa: F401  (the module: `tagger.cli.app` is the app object in the package)

    A = sys.modules["tagger.cli.app"]
    for annotation, value in [(float, "0.5"), (float, " 0.5 "), (float, "-.5E+3"), (float, "Inf"), (float, "inf"), (float, "1e400"), (float, "-0"), (float, 2),
                              (int, "-3"), (int, " 7 "), (int, "+08"), (str, "x\ny"), (list[str], ("a", "b")), (bool, True)]:  # fmt: skip
        want = try_build_adapter(annotation, OptionInfo()).validate_python(value)
        assert A._plain_value(annotation, OptionInfo(), value) == want and type(want) is type(A._plain_value(annotation, OptionInfo(), value))
    assert math.isnan(A._plain_value(float, OptionInfo(), "nan"))
    for annotation, value in [(float, "\u0661"), (float, "abc"), (float, " 1_0 "), (float, "1_0"), (int, "1.0"), (int, "\u0661"), (bool, "yes"), (float, b"1"),
                              (list[str], "a")]:  # fmt: skip
        assert A._plain_value(annotation, OptionInfo(), value) is A._SLOW, (annotation, value)
    assert A._plain_value(float, OptionInfo(min=0), "0.5") is A._SLOW  # (a range: typer words the refusal)


def test_another_typer_keeps_its_own_conversion_and_the_commands_work():
    """`_convert_without_pydantic` replaces a private part of typer 0.29; under any other version
    (`PLAIN_TYPER`) it changes nothing, so a newer typer costs time, never a broken command."""
    import subprocess
    import sys

    code = ("import sys, typer; typer.__version__ = '0.99.0'\n"
            "from typer.testing import CliRunner\nfrom tagger.cli import app\n"
            "r = CliRunner().invoke(app, ['query', '--db', sys.argv[1], '--has', 'flute', '--min-score', '0.5'])\n"
            "print(r.exit_code, 'pydantic' in sys.modules, r.output)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, "/nonexistent-folder/lib.db"], capture_output=True, text=True,
                         cwd=Path(tagger.__file__).parent.parent, check=True).stdout  # fmt: skip
    assert out.startswith("1 True ") and "no library database at /nonexistent-folder/lib.db" in out, out


@pytest.mark.parametrize("args, built", [
    (["query", "--has", "flute"], (["query"], [])),
    (["-v", "stats", "--json"], (["stats"], [])),
    (["db", "prune", "--help"], ([], ["db"])),
    (["--help"], None), ([], None), (["quer"], None), (["--version"], None),
    (["--help", "query"], None), (["-v", "-h", "db", "prune"], None), (["--version", "stats"], None),
])  # fmt: skip
def test_a_run_builds_only_the_command_it_invokes(args, built):
    """typer builds a click command of every registered command on each run (13-15 ms of a
    ``tagger query``); `tagger.cli.main` gives it only the command or group the command line names,
    and the whole app when it names none of them (a mistyped command, ``--help``)."""
    import tagger.cli as cli

    app = cli.app
    given = cli.only_invoked(app, args)
    if built is None:
        assert given is app
    else:
        assert ([c.name for c in given.registered_commands], [g.name for g in given.registered_groups]) == built
        assert len(app.registered_commands) > 10 and app.registered_groups  # (the app itself unchanged)


def test_the_invoked_command_alone_says_what_the_whole_app_says(tmp_path):
    """The help, usage errors and output of a command are the same built alone (`only_invoked`) as
    in the whole app."""
    from typer.testing import CliRunner

    import tagger.cli as cli

    for args in (["query", "--help"], ["query", "--bogus"], ["db", "prune", "--help"], ["show"],
                 ["stats", "--db", str(tmp_path / "none.db")],
                 ["--help", "query"], ["-h", "db"], ["-v", "--help", "stats"]):  # (the root's help: every command)
        whole = CliRunner().invoke(cli.app, args)
        alone = CliRunner().invoke(cli.only_invoked(cli.app, args), args)
        assert (alone.exit_code, alone.output) == (whole.exit_code, whole.output), args


@pytest.mark.integration
def test_a_scan_worker_loads_no_database_code(tmp_path):
    """A scan worker's start-up and its files (`worker_main`'s warm-up, then `analyse_file`, the audio
    digest of `tagger.tags` included) load neither SQLAlchemy nor ``tagger.db``: the worker never
    opens the database, and ``tagger.tags`` once loaded ``tagger.db.filter`` (SQLAlchemy: 0.15-0.4 s
    of every worker's start-up)."""
    import json
    import os
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    path = tmp_path / "tone.flac"
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000 * 5) / 16000), 16000)
    code = (
        "import json, sys\n"
        "from tagger import features as F\n"
        "from tagger.library.analyse import AnalysisConfig, _warm_up, analyse_file\n"
        "config = AnalysisConfig(features=F.FeatureConfig().to_dict())\n"
        "_warm_up(config)\n"
        "kinds = [type(m).__name__ for m in analyse_file(0, sys.argv[1], config=config)]\n"
        "print('\\nMODULES ' + json.dumps([kinds, sorted(sys.modules)]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT.parent), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120, env=env,
                       cwd=ROOT.parent)  # fmt: skip
    assert r.returncode == 0, r.stderr
    kinds, loaded = json.loads(r.stdout.rpartition("\nMODULES ")[2])
    assert kinds[-1] == "Done" and "FileInfo" in kinds, kinds
    assert "tagger.tags" in loaded  # (the audio digest)
    assert not {m for m in loaded if m.split(".")[0] == "sqlalchemy" or m.startswith("tagger.db")}
