"""Installation and provenance: `tagger --version` names the models an installation runs (and
refuses tampered ones), the package builds from its pyproject with the models, the migrations and
the beets plugin inside, and `setup.sh` copes with the folder it finds."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tagger(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m tagger ARGS`` of the tagger under test, run from `cwd` (not the repository)."""
    base = {k: v for k, v in os.environ.items() if k != "TAGGER_MODELS"}  # (the shipped models unless `env` names others)
    env = {**base, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "tagger", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)  # fmt: skip


# -- tagger --version -------------------------------------------------------------------------------
def test_version_names_tagger_and_the_shipped_models(tmp_path):
    """`tagger --version` had no such option (a usage error, exit 2): nothing told which models an
    installation runs. It names the package's version and the models' version, manifest hash and folder."""
    from tagger import __version__

    manifest = ROOT / "models" / "manifest.json"
    r = _tagger("--version", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    first, second, third = r.stdout.splitlines()
    assert first == f"tagger {__version__}"
    version = json.loads(manifest.read_text())["version"]
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    assert second.startswith(f"models {version} (manifest sha256 {digest}, made ")
    assert second.endswith(f" in {ROOT / 'models'}")
    assert third.startswith(f"library databases name them {version} with manifest_hash ")


def test_version_names_the_manifest_hash_the_database_and_stats_show(tmp_path):
    """`tagger --version` printed the sha256 of the manifest file (64ebaf93...) and `tagger stats
    --json` the database's `manifest_hash` of the same models, a hash of the manifest's parsed content
    (49727e6c...): a user comparing them saw two hashes for one set of models and no word of which
    was which (found walking through the README). --version names the database's one too, and
    `tagger stats` prints it for each model version, by the same 16-digit prefix."""
    from tagger.library.report import render_stats
    from tagger.model.ensemble import manifest_hash, read_manifest

    stored = manifest_hash(read_manifest(ROOT / "models"))  # what `Ensemble.hash` gives a scan to store
    version = json.loads((ROOT / "models" / "manifest.json").read_text())["version"]
    r = _tagger("--version", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"manifest_hash {stored[:16]} (tagger stats)" in r.stdout.splitlines()[-1]
    stats = {"tracks": {"total": 2, "ok": 2, "error": 0, "missing": 0, "stale": 0, "no_instrument": 2},
             "audio_seconds": 8.0, "families": {}, "cooccurrence": {},
             "model_versions": [{"version": version, "manifest_hash": stored, "tracks": 2}]}  # fmt: skip
    assert f"model {version}, manifest_hash {stored[:16]}: 2 track(s)" in render_stats(stats).splitlines()


def test_version_refuses_tampered_models_naming_the_file(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    member = models / "member-models" / "trunk-prod-shift4"
    with open(member / "flute.keras", "ab") as f:
        f.write(b"x")
    r = _tagger("--version", cwd=tmp_path, env={"TAGGER_MODELS": str(models)})
    assert r.returncode == 1
    assert r.stdout.splitlines()[0].startswith("tagger ")
    assert r.stderr == f"tagger: error: {member / 'flute.keras'}: sha256 mismatch for 'flute': the file was modified or corrupted (refusing to load)\n"


def test_version_of_a_missing_model_folder_is_an_error(tmp_path):
    r = _tagger("--version", cwd=tmp_path, env={"TAGGER_MODELS": str(tmp_path / "none")})
    assert r.returncode == 1
    assert r.stderr.startswith(f"tagger: error: {tmp_path / 'none' / 'manifest.json'}: model manifest not found")


def test_model_info_loads_no_tensorflow():
    code = ("import sys; from tagger.model.ensemble import model_info; i = model_info(); "
            "print(i.version, sorted({'tensorflow', 'keras', 'onnxruntime'} & set(sys.modules)))")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TAGGER_MODELS", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(" ", 1)[1].strip() == "[]"


# -- the package: pyproject, wheel, sdist -----------------------------------------------------------
def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _minimum(requirement: str) -> tuple[int, ...]:
    """The version a ``name>=X.Y`` requirement asks for at least, as a tuple (0 when it names none)."""
    import re

    m = re.search(r">=\s*([0-9][0-9.]*)", requirement)
    return tuple(int(p) for p in m.group(1).split(".")) if m else (0,)


def test_the_build_requires_a_setuptools_that_reads_the_pyproject():
    """`license = "MIT"` (a PEP 639 string) is read by setuptools 77 and later only: with the
    ``setuptools>=68`` the build asked for, a build without isolation on setuptools 68..76 (Debian's
    python3-setuptools, `pip install --no-build-isolation .`) refused the whole pyproject."""
    config = _pyproject()
    setuptools_req = [r for r in config["build-system"]["requires"] if r.startswith("setuptools")]
    assert len(setuptools_req) == 1
    if isinstance(config["project"].get("license"), str):
        assert _minimum(setuptools_req[0]) >= (77,), setuptools_req
    test_extra = [r for r in config["project"]["optional-dependencies"]["test"] if r.startswith("setuptools")]
    assert test_extra and _minimum(test_extra[0]) >= _minimum(setuptools_req[0])  # (the wheel test builds with it)


def test_the_version_is_written_once():
    """pyproject's version was a second copy of tagger.__version__ (what `tagger --version` and the
    Dask workers' check read): bumping one left the installed metadata and the code apart."""
    config = _pyproject()
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tagger.__version__"}


def _saved_by() -> dict[str, str]:
    """The Keras version that saved each shipped model file (its ``metadata.json``)."""
    import zipfile

    saved = {}
    for path in sorted((ROOT / "models").rglob("*.keras")):
        with zipfile.ZipFile(path) as z:
            saved[path.relative_to(ROOT).as_posix()] = json.loads(z.read("metadata.json"))["keras_version"]
    return saved


def _requirement(name: str) -> str:
    (req,) = [r for r in _pyproject()["project"]["dependencies"] if r.split(">")[0].split("=")[0].strip() == name]
    return req


_MODULE_OF = {"psycopg[binary]": "psycopg", "dask[distributed]": "distributed"}


def _module_of(req: str) -> str:
    dist = re.split(r"[<>=!~ ;]", req, maxsplit=1)[0]
    return _MODULE_OF.get(dist, dist.replace("-", "_"))


def _imported_modules(paths) -> set[str]:
    """The top-level names that the modules at `paths` import (absolute imports, lazy ones inside
    functions too), read from their syntax: a docstring line that begins with 'from ' is none."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_dependency_installed_with_tagger_is_one_tagger_imports():
    """librosa was installed with tagger (and with it numba, llvmlite and scikit-learn), though tagger
    had computed its features in numpy for many sessions and imported it nowhere: only the tests did.
    A package that only the tests use belongs to the test extra."""
    imported = _imported_modules((ROOT / "tagger").rglob("*.py"))
    for req in _pyproject()["project"]["dependencies"]:
        assert _module_of(req) in imported, f"{req}: no tagger module imports {_module_of(req)}"


def test_tagger_imports_no_package_that_only_the_tests_install():
    """The converse: a package that tagger imports (lazily too) is one of its dependencies or of an
    extra a user installs (postgres, dask, beets), never one the test extra alone brings (librosa)."""
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    declared = {_module_of(r) for r in project["dependencies"]}
    declared |= {_module_of(r) for name, reqs in extras.items() if name != "test" for r in reqs}
    imported = _imported_modules((ROOT / "tagger").rglob("*.py")) - set(sys.stdlib_module_names) - {"tagger"}
    assert imported - declared == set()


def test_a_docstring_line_beginning_with_from_is_no_import(tmp_path):
    """The check above read 'from X' at a line's start as an import: 9 docstring lines of tagger
    begin so ('from the others and ...'), and one beginning 'from librosa' would have counted."""
    module = tmp_path / "m.py"
    module.write_text('"""Mel filters\nfrom librosa, checked in the tests."""\nimport numpy as np\n\n\n'
                      'def f():\n    from scipy import signal\n')  # fmt: skip
    assert _imported_modules([module]) == {"numpy", "scipy"}


def test_the_stacking_script_says_that_scikit_learn_is_not_installed_with_tagger(tmp_path, monkeypatch):
    """scripts/stack_scores.py fits scikit-learn's logistic regression, which came with librosa: since
    librosa left tagger's dependencies (efb40d7), ./setup.sh without --test installs neither."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stack_scores", ROOT / "scripts" / "stack_scores.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name in ("sklearn", "sklearn.linear_model", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, name, None)  # (as where it is not installed: ImportError)
    with pytest.raises(SystemExit, match=r"needs scikit-learn.*pip install scikit-learn"):
        script.main(tmp_path, tmp_path)


def test_the_keras_required_reads_the_shipped_models():
    """pyproject asked for keras>=3.0, but the shipped models, saved by Keras 3.15.1, do not load in
    3.14 or older ("GlorotUniform.__init__() got an unexpected keyword argument 'input_axes'"): a
    .venv that had an older Keras kept it, and on Python 3.10 pip could install no newer one (3.12.4),
    so the installed tagger could not load its models. The minimum is the newest version (major.minor)
    that saved one of them."""
    saved = _saved_by()
    assert saved
    newest = max(tuple(int(p) for p in v.split(".")[:2]) for v in saved.values())
    assert _minimum(_requirement("keras"))[:2] >= newest, (_requirement("keras"), saved)


def test_requires_python_is_one_the_model_runtime_supports():
    """requires-python said 3.10, where neither the Keras the models need nor the ONNX Runtime
    installed here exist: pip's resolver must refuse such a Python at once, naming it."""
    from importlib.metadata import metadata

    ours = _minimum(_pyproject()["project"]["requires-python"])
    for dist in ("keras", "onnxruntime"):
        theirs = metadata(dist).get("Requires-Python")
        if theirs:
            assert ours >= _minimum(theirs), (dist, theirs)


SOURCES = ("pyproject.toml", "MANIFEST.in", "README.md", "scripts/build_backend.py", "tagger", "models", "migrations",
           "beetsplug")  # fmt: skip
"""What the package is built from (a copy of them: the build writes build/ and *.egg-info beside them)."""


def _build_env() -> dict:
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # (offline)
    env.pop("PYTHONPATH", None)
    return env


def _expected_files() -> set[str]:
    """Every file the wheel must hold: the code, the models (as tagger/models), the Alembic scripts
    (as tagger/migrations) and the beets plugin."""
    mapped = {"models": "tagger/models", "migrations": "tagger/migrations", "tagger": "tagger", "beetsplug": "beetsplug"}
    files = set()
    for folder, inside in mapped.items():
        for p in (ROOT / folder).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                files.add(f"{inside}/{p.relative_to(ROOT / folder).as_posix()}")
    return files


def _wheel_files(wheel: Path) -> tuple[set[str], str]:
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        return names, z.read(metadata).decode()


@pytest.mark.slow
@pytest.mark.integration
def test_the_wheel_and_the_sdist_hold_the_models_migrations_and_plugin(tmp_path):
    """`pip wheel .`, and a wheel built from the sdist, hold every model file, the Alembic env and
    revisions and the beets plugin, and name the version tagger reports (offline: no build isolation)."""
    import importlib.metadata

    # (the version read, not the module imported: setuptools' import adds its vendored folder to this
    # process's sys.path, for every test after this one)
    try:
        setuptools = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        setuptools = "none"
    if _minimum(f">={setuptools}") < (77,):
        pytest.skip(f"the test extra's setuptools>=77 (here {setuptools}): ./setup.sh --test")
    from tagger import __version__

    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    expected = _expected_files()
    assert {"tagger/models/manifest.json", "tagger/migrations/env.py", "tagger/migrations/script.py.mako",
            "beetsplug/instruments.py"} <= expected  # fmt: skip

    def wheel_of(source: Path, out: Path) -> Path:
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                            str(source)], capture_output=True, text=True, env=_build_env(), timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        (wheel,) = out.glob("tagger-*.whl")
        return wheel

    def check(wheel: Path) -> None:
        import zipfile

        from tagger.library.remote import code_digest

        names, metadata = _wheel_files(wheel)
        assert sorted(expected - names) == [] and "tagger/gone.py" not in names
        assert f"\nVersion: {__version__}\n" in metadata
        # a Dask worker on the wheel and a client on the checkout: the same code digest (the
        # migrations the wheel holds as tagger/migrations made every worker refuse)
        unpacked = tmp_path / "unpacked" / wheel.parent.name
        zipfile.ZipFile(wheel).extractall(unpacked)
        assert code_digest(str(unpacked / "tagger")) == code_digest(str(src / "tagger"))

    # a module built once and deleted since: setuptools' build/lib kept it, and the next wheel shipped it
    (src / "tagger" / "gone.py").write_text("")
    assert "tagger/gone.py" in _wheel_files(wheel_of(src, tmp_path / "before"))[0]
    (src / "tagger" / "gone.py").unlink()
    check(wheel_of(src, tmp_path / "wheel"))
    code = "import sys; sys.path.insert(0, 'scripts'); import build_backend as b; print(b.build_sdist(sys.argv[1]))"
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sdist")], cwd=src, capture_output=True, text=True,
                       env=_build_env(), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    check(wheel_of(tmp_path / "sdist" / r.stdout.split()[-1], tmp_path / "from-sdist"))


# -- setup.sh ---------------------------------------------------------------------------------------
FAKE_PYTHON = """#!/bin/sh
# a .venv's python for setup.sh: records its calls; pip works once ensurepip ran (or .venv/pip is there)
here=$(dirname "$0")/..
echo "$*" >> "$here/calls"
case "$1 $2" in
  "-m pip") [ -e "$here/pip" ] || {{ echo "No module named pip" >&2; exit 1; }} ;;
  "-m ensurepip") : > "$here/pip" ;;
  "-c "*) exit {too_old} ;;
  "-V ") echo "Python {version}" ;;
esac
"""


def _setup_folder(tmp_path: Path, *, packages_installed: bool = True, uid: int = 0) -> tuple[Path, dict]:
    """A copy of setup.sh in a folder whose path has spaces and non-ASCII letters, and a PATH of stubs:
    dpkg-query (every package installed, or none), id (`uid`), and the few tools setup.sh runs (no sudo)."""
    folder = tmp_path / "My Music Tools" / "tagger-ü"
    folder.mkdir(parents=True)
    shutil.copy2(ROOT / "setup.sh", folder / "setup.sh")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "dpkg-query").write_text(f"#!/bin/sh\n{'echo install ok installed' if packages_installed else 'exit 1'}\n")
    (stubs / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (stubs / "apt-get").write_text("#!/bin/sh\necho apt-get must not run here >&2; exit 99\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    for tool in ("dirname", "grep", "ls", "sh", "env", "bash"):
        os.symlink(shutil.which(tool), stubs / tool)
    os.symlink(sys.executable, stubs / "python3")  # (a Python >= 3.11: the tests run on one)
    return folder, {**os.environ, "PATH": str(stubs)}


def _fake_venv(folder: Path, *, version: str = "3.11.2", pip: bool = True, runs: bool = True) -> Path:
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    if runs:
        too_old = int(tuple(map(int, version.split("."))) < (3, 11))
        (bin_dir / "python").write_text(FAKE_PYTHON.format(too_old=too_old, version=version))
        (bin_dir / "python").chmod(0o755)
    else:  # (the Python that made it is gone)
        os.symlink("/nonexistent/python3", bin_dir / "python")
    if pip:
        (folder / ".venv" / "pip").touch()
    (folder / ".venv" / "site-packages-of-someone").write_text("kept")
    return folder / ".venv"


def _run_setup(folder: Path, env: dict, *args: str, shell: str = "bash") -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which(shell), str(folder / "setup.sh"), *args], capture_output=True, text=True,
                          env=env, cwd=folder.parent, timeout=60)  # fmt: skip


def test_setup_gives_an_existing_venv_without_pip_its_pip(tmp_path):
    """A .venv made with ``python3 -m venv --without-pip`` stopped setup.sh at once: "No module named pip"."""
    folder, env = _setup_folder(tmp_path)
    venv = _fake_venv(folder, pip=False)
    for shell in ("bash", "sh"):  # (twice: the second run finds pip there; `sh setup.sh` runs it under bash)
        r = _run_setup(folder, env, shell=shell)
        assert r.returncode == 0, r.stderr
    calls = (venv / "calls").read_text().splitlines()
    assert calls.count("-m ensurepip --upgrade") == 1
    assert calls.index("-m ensurepip --upgrade") < calls.index("-m pip install -q -e .")
    assert calls.count("-m pip install -q -e .") == 2
    assert (venv / "site-packages-of-someone").read_text() == "kept"


@pytest.mark.parametrize("kind", ["broken", "old"])
def test_setup_refuses_a_venv_it_cannot_use_and_keeps_it(tmp_path, kind):
    """A .venv whose Python is gone (``python3 -m venv`` then failed: "[Errno 2] No such file or
    directory: '.venv/bin/python3'") or too old: a clear error naming it, the folder left as it is."""
    folder, env = _setup_folder(tmp_path)
    venv = _fake_venv(folder, version="3.10.13") if kind == "old" else _fake_venv(folder, runs=False)
    r = _run_setup(folder, env)
    assert r.returncode == 1
    reason = ("runs Python 3.10.13, and tagger needs Python 3.11 or later" if kind == "old"
              else "is no virtual environment whose Python runs (made by a Python since removed or moved?)")  # fmt: skip
    assert r.stderr == f"setup.sh: error: {venv} {reason}: move it away (or remove it), then run {folder / 'setup.sh'} again\n"
    assert (venv / "site-packages-of-someone").read_text() == "kept"


def test_setup_without_root_or_sudo_names_the_missing_packages(tmp_path):
    """Not root, no sudo: "sudo: command not found" was all setup.sh said."""
    folder, env = _setup_folder(tmp_path, packages_installed=False, uid=1000)
    r = _run_setup(folder, env)
    assert r.returncode == 1
    assert r.stderr.startswith("setup.sh: error: the Debian packages ffmpeg fluidsynth fluid-soundfont-gm "
                               "musescore-general-soundfont python3-venv are missing and there is no sudo")  # fmt: skip
    assert "apt-get must not run" not in r.stderr and not (folder / ".venv").exists()


# -- the user's folders -----------------------------------------------------------------------------
def test_a_scan_whose_database_folder_cannot_be_made_stops_before_the_models_load(tmp_path):
    """XDG_DATA_HOME naming a file (or a read-only home): `tagger scan` loaded the models (seconds,
    an ONNX export each run where the cache cannot be written either), then stopped on the database
    folder. It stops first now, with the same error (a model folder that does not exist shows it)."""
    (tmp_path / "music").mkdir()
    (tmp_path / "a-file").write_text("")
    r = _tagger("scan", "music", "--models", str(tmp_path / "no-models"), cwd=tmp_path,
                env={"XDG_DATA_HOME": str(tmp_path / "a-file"), "TAGGER_DB": ""})  # fmt: skip
    assert r.returncode == 1
    assert r.stderr == f"tagger: error: cannot create the database folder {tmp_path / 'a-file' / 'tagger'}: Not a directory\n"
    assert (tmp_path / "a-file").read_text() == ""
