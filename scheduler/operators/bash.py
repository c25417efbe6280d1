"""BashOperator: run a shell command in a subprocess, streaming its output to the task log."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Container, Mapping, Sequence
from typing import IO, Any, ClassVar

from scheduler.errors import TaskFailed, TaskSkipped
from scheduler.operators.base import BaseOperator

log = logging.getLogger("headwater.task")


def _context_env(context: Mapping[str, Any]) -> dict[str, str]:
    """``HEADWATER_CTX_*`` variables describing the running task, from what the context has."""
    env: dict[str, str] = {}
    dag, task = context.get("dag"), context.get("task")
    if dag is not None and getattr(dag, "dag_id", None):
        env["HEADWATER_CTX_DAG_ID"] = str(dag.dag_id)
    if task is not None and getattr(task, "task_id", None):
        env["HEADWATER_CTX_TASK_ID"] = str(task.task_id)
    if context.get("run_id"):
        env["HEADWATER_CTX_RUN_ID"] = str(context["run_id"])
    logical_date = context.get("logical_date")
    if logical_date is not None:
        iso = getattr(logical_date, "isoformat", None)
        env["HEADWATER_CTX_LOGICAL_DATE"] = iso() if iso else str(logical_date)
    return env


class BashOperator(BaseOperator):
    """Runs ``bash -c bash_command``; its last line of stdout is the task's XCom.

    - ``env``: the whole environment of the command (None: this process's), or added to this
      process's with ``append_env=True``. ``HEADWATER_CTX_DAG_ID/TASK_ID/RUN_ID/LOGICAL_DATE``
      are always set.
    - ``cwd``: the working directory (None: the worker's).
    - Exit code ``skip_on_exit_code`` (an int, a collection of ints, or None) ends the task as
      skipped (:class:`~scheduler.errors.TaskSkipped`); any other non-zero code raises
      :class:`~scheduler.errors.TaskFailed` naming the code.
    - stdout and stderr lines go to the ``headwater.task`` logger as they are printed.
    - A ``bash_command`` ending in ``.sh``/``.bash`` is a template file (see templating).
    """

    template_fields: ClassVar[Sequence[str]] = ("bash_command", "env", "cwd")
    template_ext: ClassVar[Sequence[str]] = (".sh", ".bash")
    ui_color = "#f0ede4"

    def __init__(
        self,
        *,
        bash_command: str,
        env: Mapping[str, str] | None = None,
        append_env: bool = False,
        cwd: str | None = None,
        skip_on_exit_code: int | Container[int] | None = 99,
        output_encoding: str = "utf-8",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bash_command = bash_command
        self.env = dict(env) if env is not None else None
        self.append_env = append_env
        self.cwd = cwd
        self.skip_on_exit_code = skip_on_exit_code
        self.output_encoding = output_encoding
        self._process: subprocess.Popen[bytes] | None = None

    def _environment(self, context: Mapping[str, Any]) -> dict[str, str]:
        if self.env is None:
            env = dict(os.environ)
        else:
            env = {**os.environ, **self.env} if self.append_env else dict(self.env)
        env = {str(k): str(v) for k, v in env.items()}
        env.update(_context_env(context))
        return env

    def _is_skip(self, code: int) -> bool:
        skip = self.skip_on_exit_code
        if skip is None:
            return False
        if isinstance(skip, int):
            return code == skip
        return code in skip

    def _pump(self, stream: IO[bytes], lines: deque[str], stream_name: str) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(self.output_encoding, errors="backslashreplace").rstrip("\r\n")
            lines.append(line)
            log.info("%s", line, extra={"stream": stream_name})

    def execute(self, context: Mapping[str, Any]) -> str | None:
        """Run the command; return its last stdout line (None if it printed nothing)."""
        command = self.bash_command
        if not isinstance(command, str) or not command.strip():
            raise TaskFailed(f"bash_command of task {self.task_id!r} is empty; give a command")
        if self.cwd is not None and not os.path.isdir(self.cwd):
            raise TaskFailed(
                f"cwd {self.cwd!r} of task {self.task_id!r} is not an existing directory; "
                "create it or fix the path")
        log.info("Running command: %s", command)
        process = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", command],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self._environment(context), cwd=self.cwd, start_new_session=True,
        )
        self._process = process
        stdout: deque[str] = deque(maxlen=1)
        stderr: deque[str] = deque(maxlen=5)
        assert process.stdout is not None and process.stderr is not None
        reader = threading.Thread(
            target=self._pump, args=(process.stderr, stderr, "stderr"), daemon=True)
        reader.start()
        try:
            self._pump(process.stdout, stdout, "stdout")
            reader.join()
            code = process.wait()
        finally:
            if process.poll() is None:  # interrupted (timeout, signal): do not leave it behind
                self.on_kill()
            process.stdout.close()
            process.stderr.close()
        log.info("Command exited with return code %s", code)
        if self._is_skip(code):
            raise TaskSkipped(f"bash command exited with code {code} (skip_on_exit_code); "
                              "the task is skipped")
        if code != 0:
            tail = f"; last stderr line: {stderr[-1]!r}" if stderr else ""
            raise TaskFailed(
                f"bash command of task {self.task_id!r} failed with exit code {code}{tail}. "
                "See the task log for its output")
        return stdout[-1] if stdout else None

    def on_kill(self) -> None:
        """Terminate the command and everything it started (its process group)."""
        process = self._process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
