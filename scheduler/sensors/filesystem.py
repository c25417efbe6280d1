"""FileSensor: wait for a file (or a glob of files) to appear."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from scheduler.sensors.base import BaseSensorOperator


class FileSensor(BaseSensorOperator):
    """Waits until ``filepath`` exists: a file, a glob pattern matching at least one file, or a
    folder holding at least one file (anywhere below it).

    ``filepath`` is templated. ``fs_conn_id`` is accepted for Airflow DAG files and ignored:
    paths are read on the worker's file system as they are. ``recursive`` lets ``**`` in the
    pattern match across folders.
    """

    template_fields: ClassVar[Sequence[str]] = ("filepath",)
    ui_color = "#91818a"

    def __init__(self, *, filepath: str, fs_conn_id: str = "fs_default",
                 recursive: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filepath = filepath
        self.fs_conn_id = fs_conn_id
        self.recursive = recursive

    def poke(self, context: Mapping[str, Any]) -> bool:
        path = os.path.expanduser(str(self.filepath))
        for match in glob.glob(path, recursive=self.recursive):
            if os.path.isfile(match):
                return True
            if os.path.isdir(match) and any(files for _, _, files in os.walk(match)):
                return True
        return False
