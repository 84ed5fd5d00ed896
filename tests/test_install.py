"""Installation and provenance: `tagger --version` names the models an installation runs (and
refuses tampered ones), the package builds from its pyproject with the models, the migrations and
the beets plugin inside, and `setup.sh` copes with the folder it finds."""

from __future__ import annotations

import hashlib
import json
import os
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
    first, second = r.stdout.splitlines()
    assert first == f"tagger {__version__}"
    version = json.loads(manifest.read_text())["version"]
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    assert second.startswith(f"models {version} (manifest sha256 {digest}, made ")
    assert second.endswith(f" in {ROOT / 'models'}")


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
