"""Paths inside folders: the one test of "this path is that folder, or lies under it"."""

from __future__ import annotations

import os
from collections.abc import Iterable


def folder_prefix(folder: str) -> str:
    """``folder`` with exactly one trailing separator: what every path under it starts with."""
    return folder.rstrip(os.sep) + os.sep


def is_under(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies under it (plain string test: give both in the same
    form, e.g. both absolute or both resolved)."""
    return path == folder or path.startswith(folder_prefix(folder))


def under_any(path: str, folders: Iterable[str]) -> bool:
    """True when ``path`` is one of ``folders`` or lies under one of them."""
    return any(is_under(path, f) for f in folders)
