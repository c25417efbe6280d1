"""Finding DAG files: every ``*.py`` under the DAGs folder that mentions a DAG, minus what
``.headwaterignore`` files exclude.

A ``.headwaterignore`` holds one glob pattern a line (``#`` starts a comment), matched against
paths relative to the folder that holds the ignore file; it applies to that folder and below.
A pattern without a slash also matches any single path component (``tmp`` ignores every file in
a ``tmp`` folder), as in ``.gitignore``.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

IGNORE_FILE = ".headwaterignore"


def _read_patterns(folder: Path) -> list[str]:
    path = folder / IGNORE_FILE
    if not path.is_file():
        return []
    patterns = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            patterns.append(line.rstrip("/"))
    return patterns


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    for pattern in patterns:
        if fnmatch.fnmatch(rel, pattern):
            return True
        if "/" not in pattern and any(fnmatch.fnmatch(p, pattern) for p in parts):
            return True
        if "/" in pattern and fnmatch.fnmatch(rel, pattern + "/*"):
            return True
    return False


def might_contain_dag(path: Path) -> bool:
    """Cheap pre-filter, like Airflow's safe mode: a file that never says "dag" declares none."""
    try:
        with path.open("rb") as fh:
            return b"dag" in fh.read().lower()
    except OSError:
        return False


def list_dag_files(dags_folder: Path) -> list[Path]:
    """Absolute paths of candidate DAG files below ``dags_folder``, sorted; [] if it is missing."""
    if not dags_folder.is_dir():
        return []
    found: list[Path] = []
    # (folder, patterns inherited from above, each paired with the folder that declared it)
    stack: list[tuple[Path, list[tuple[Path, list[str]]]]] = [(dags_folder, [])]
    while stack:
        folder, inherited = stack.pop()
        rules = inherited + [(folder, _read_patterns(folder))]

        def skip(p: Path, rules: list[tuple[Path, list[str]]] = rules) -> bool:
            return any(_ignored(p.relative_to(base).as_posix(), pats)
                       for base, pats in rules if pats)

        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith(".") or entry.name == "__pycache__" or skip(path):
                continue
            if entry.is_dir(follow_symlinks=True):
                stack.append((path, rules))
            elif entry.name.endswith(".py") and might_contain_dag(path):
                found.append(path.resolve())
    return sorted(found)
