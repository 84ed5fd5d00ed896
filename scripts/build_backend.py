"""tagger's build backend (pyproject's ``build-backend``): setuptools' own, `setuptools.build_meta`,
except that every wheel is built from an empty ``build/lib``.

setuptools builds `pip install .` and `pip wheel .` in the source tree, copying the package into
build/lib over what an earlier build left there and removing nothing: a module, an Alembic revision
or a model file deleted or renamed since was shipped again. A checkout built, updated (``git pull``)
and built again shipped ``tagger/audio.py`` beside the ``tagger/audio/`` package that had replaced it;
a revision file renamed would give the installed migrations two heads."""

import shutil
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every hook as setuptools has it, build_wheel aside)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    shutil.rmtree(Path("build", "lib"), ignore_errors=True)  # (PEP 517 hooks run in the source tree)
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
