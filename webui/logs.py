"""Reading task logs for display: only files inside the logs folder, only their tail."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The most of a log a page shows: its last 200 KB.
LOG_TAIL_BYTES = 200 * 1024


@dataclass(frozen=True)
class LogView:
    """What a page shows of one attempt's log.

    ``text`` is the log's (tail) text, or None when nothing is shown; ``note`` says why nothing
    is shown, or that the text is only the end of a longer file (``truncated``).
    """

    text: str | None
    note: str | None = None
    truncated: bool = False


def read_log_tail(log_path: str | None, logs_folder: Path,
                  max_bytes: int = LOG_TAIL_BYTES) -> LogView:
    """The last ``max_bytes`` of the log at ``log_path``, decoded as UTF-8 (bad bytes replaced).

    The file is read only if its real path (symbolic links resolved; a relative path is taken
    relative to ``logs_folder``) lies inside ``logs_folder``: a path stored in the database
    must not make the web server read arbitrary files. Never raises for a missing or unreadable
    file; the returned note says what happened.
    """
    if not log_path:
        return LogView(None, "No log was recorded for this attempt.")
    base = logs_folder.resolve()
    try:
        path = (base / log_path).resolve()  # an absolute log_path replaces base
    except (OSError, RuntimeError, ValueError):
        return LogView(None, "The log path of this attempt cannot be used.")
    if not path.is_relative_to(base):
        return LogView(None, "The log of this attempt is outside the logs folder "
                             f"({base}); it is not shown.")
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            truncated = size > max_bytes
            if truncated:
                fh.seek(size - max_bytes)
            data = fh.read(max_bytes)
    except FileNotFoundError:
        return LogView(None, "The log file does not exist (yet): it appears when the attempt "
                             "starts writing, and goes if the logs folder is cleaned.")
    except IsADirectoryError:
        return LogView(None, "The log path of this attempt is a folder, not a file.")
    except OSError as exc:
        return LogView(None, f"The log file cannot be read: {exc.strerror or exc}.")
    text = data.decode("utf-8", errors="replace")
    if truncated:
        # Drop the partial first line the cut left behind.
        newline = text.find("\n")
        if 0 <= newline < len(text) - 1:
            text = text[newline + 1:]
        return LogView(text, f"Showing the last {max_bytes // 1024} KB of a "
                             f"{size / 1024:.0f} KB log.", truncated=True)
    return LogView(text)
