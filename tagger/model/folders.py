"""Where model folders are: the default and the shipped ones, and the folders models may be written into."""

from __future__ import annotations

import os
from pathlib import Path

from tagger.errors import ModelError, UserError
from tagger.model.manifest import MANIFEST, read_manifest

MODELS_ENV = "TAGGER_MODELS"
TRAIN_INTO_MEMBERS = ("{out} is an averaged ensemble: train into each of its members (a copy of the member's folder, "
                      "--out MEMBER), then combine them again (tagger combine)")  # fmt: skip
"""Why `tagger train` does not train into an averaged ensemble, and what to do instead."""


def default_model_dir() -> Path:
    """``$TAGGER_MODELS``, else the shipped models (`shipped_model_dir`)."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    return shipped_model_dir()


def shipped_model_dir() -> Path:
    """The shipped models: the installed package's ``tagger/models``, else the repository's ``models/``."""
    here = Path(__file__).resolve().parent.parent
    installed = here / "models"
    if (installed / MANIFEST).is_file():
        return installed
    return here.parent / "models"


SHIPPED_VERSIONS = (
    "compact-mixture-1", "trunk-mixture-2", "trunk-harmonic-1", "trunk-harmonic-2", "trunk-harmonic-3",
    "trunk-harmonic-4", "trunk-harmonic-5", "trunk-harmonic-6", "averaged-harmonic-7", "averaged-shift-8",
    "averaged-soft-9", "averaged-soft-10", "averaged-onese-11",
)  # fmt: skip
"""The version of every model tagger has shipped (``models/manifest.json``'s, oldest first; a new
one is added as it ships): a file an older tagger tagged holds one of them as INSTRUMENTS_MODEL, its
fields tagger's with or without the library database that recorded them (`tagger untag`)."""


def known_model_versions(*, named=(), recorded=()) -> set[str]:
    """The model versions whose fields (INSTRUMENTS_MODEL one of them) are provably tagger's, the one
    rule `tagger untag` removes by and tag writes (a scan's, `tagger tag`'s, the beets plugin's)
    overwrite by: every one tagger has shipped (`SHIPPED_VERSIONS`: files an older tagger tagged), the
    shipped model's and $TAGGER_MODELS' (their manifests), ``recorded`` (those a library database
    records, `tagger.db.listing.model_version_names`) and ``named`` (the user's --model-version, a
    write's own model). Fields of any other are not provably tagger's (a user's INSTRUMENTS=flute with
    INSTRUMENTS_MODEL=kid3-manual, another program's of the same names): kept."""
    known = {str(name).strip() for name in (*named, *recorded)} | set(SHIPPED_VERSIONS)
    for folder in {default_model_dir(), shipped_model_dir()}:
        try:
            known.add(str(read_manifest(folder)["version"]).strip())
        except (ModelError, KeyError, TypeError):
            continue
    return known


MODEL_FILE_NAMES = ("manifest.json", "manifest.json.tmp")
"""What `tagger.model.store` writes into a model directory, besides its ``*.keras`` files."""


def check_output_dir(out_dir: str | os.PathLike, *, hint: str, other_files: bool = True) -> None:
    """Refuse to write models into `out_dir` (`tagger train --out`, `tagger combine --out`) when it
    is, or lies in, the shipped models (part of the installation, replaced only by copying a
    finished model folder over them), or is a member of an averaged ensemble (whose manifest
    records the member's sha256: changed in place, the ensemble no longer loads), or a folder of
    other files than a model's (a music folder given by mistake; `other_files`: check that too).
    `hint`: what to do instead."""
    out = Path(out_dir).resolve()
    shipped = shipped_model_dir().resolve()
    if out == shipped or shipped in out.parents:
        raise UserError(f"{out_dir} is tagger's shipped models: {hint}, then pass it with --models or ${MODELS_ENV}")
    for above in list(out.parents)[:3]:
        if not (above / MANIFEST).is_file():
            continue
        try:
            members = read_manifest(above).get("members") or []
        except ModelError:
            continue
        for m in members if isinstance(members, list) else ():
            if isinstance(m, dict) and (above / str(m.get("dir", ""))).resolve() in (out, *out.parents):
                raise UserError(f"{out_dir} is a member of the averaged ensemble {above}, which records its files' "
                                f"hashes: {hint} (a copy outside the ensemble), then combine again")  # fmt: skip
    if other_files and out.is_dir() and not (out / MANIFEST).is_file():
        other = sorted(p.name for p in out.iterdir() if not (p.name in MODEL_FILE_NAMES or p.name.endswith(".keras")))
        if other:
            shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
            raise UserError(f"{out_dir} holds files that are not a model's ({shown}): {hint}")
    elif out.exists() and not out.is_dir():
        raise UserError(f"{out_dir} is a file, not a folder: {hint}")
