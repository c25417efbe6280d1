"""Serving the web UI: gunicorn for real use, werkzeug's server for tests and development."""

from __future__ import annotations

import logging
import secrets
import sys
from typing import Any

from flask import Flask
from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from werkzeug.serving import BaseWSGIServer, make_server

from scheduler.config import Settings
from webui import create_app


class _StderrAccessLogger(glogging.Logger):
    """gunicorn's logger with the access log on stderr (gunicorn's ``-`` means stdout)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if cfg.accesslog == "-":
            self._set_handler(self.access_log, "-", logging.Formatter(self.access_fmt),
                              stream=sys.stderr)


class _HeadwaterGunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn configured in code: no command line or config file of gunicorn's is read."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:  # settings newer than the installed gunicorn: skip
                self.cfg.set(key, value)

    def load(self) -> Flask:
        # Called in each worker after the fork, so no engine or connection crosses a fork.
        return create_app(self._settings)


def serve(settings: Settings, host: str, port: int, workers: int = 2) -> None:
    """Serve the web UI with gunicorn on ``host:port`` until SIGTERM/SIGINT; blocks.

    Each of the ``workers`` processes builds its own app (and store engine). When
    ``settings.secret_key`` is empty one random key is made here and shared by all workers, so
    a session cookie signed by one worker is valid in the others (it changes on restart; set
    ``[webserver] secret_key`` to keep sessions across restarts). Access log and error log go
    to stderr. Exits the process through gunicorn (``SystemExit``) if it cannot bind.
    """
    if not settings.secret_key:
        settings = settings.with_overrides(secret_key=secrets.token_hex(32))
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": max(1, workers),
        "accesslog": "-",
        "errorlog": "-",
        "logger_class": _StderrAccessLogger,
        "proc_name": "headwater-webserver",
        "timeout": 60,
        "graceful_timeout": 10,
        # gunicorn >= 25 opens a control socket at a fixed path under $HOME by default; two
        # Headwater web servers (or tests) on one machine would fight over it.
        "control_socket_disable": True,
    }
    _HeadwaterGunicorn(settings, options).run()


def make_dev_server(settings: Settings, host: str = "127.0.0.1", port: int = 0,
                    app: Flask | None = None) -> BaseWSGIServer:
    """A threaded werkzeug server for the UI, bound but not yet serving: call
    ``serve_forever()`` (e.g. in a thread) and ``shutdown()``. ``port=0`` picks a free port;
    ``server.port`` tells which."""
    return make_server(host, port, app or create_app(settings), threaded=True)


def serve_dev(settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the UI with werkzeug's development server until interrupted; blocks. For tests
    and development only (one process, no access control hardening)."""
    server = make_dev_server(settings, host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
