"""``ecg serve``: the dashboard under gunicorn (several worker processes, each threaded).

Every worker builds its own app from :func:`dashboard.app.create_app` (no app is built
in the master, so nothing with threads, such as JAX, is ever forked). Uploads live in the
shared on-disk session store (:mod:`dashboard.state`), so any worker can serve any
session. Before forking anything the master checks what would otherwise fail in every
worker: the classifier files and the session store; a problem is one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

from ecgcore.errors import EcgError, ModelError

# One process by default: a Live stream lives in the worker that started it, so the
# Live page works only with one worker. `--workers N` scales browsing and uploads (the
# session store is shared on disk or Redis) and the Live page then says why it is off.
DEFAULT_WORKERS = 1
DEFAULT_THREADS = 8
WORKERS_ENV = "ECG_SERVE_WORKERS"
MODEL_FILES = {"binary": "binary.keras", "aami": "aami.keras"}
"""The classifier files, as ``ecgcore.inference.MODEL_FILES`` (which imports keras)."""
KERAS_MEMBERS = ("config.json", "model.weights.h5")
"""What a Keras 3 ``.keras`` archive must hold to be loadable at all."""


def packaged_models_dir() -> Path:
    """The folder ``ecgcore.inference`` loads the classifiers from (without importing keras)."""
    import ecgcore

    return Path(ecgcore.__file__).resolve().parent / "models"


def check_models(folder: str | Path | None = None) -> None:
    """Check that both classifier files are there and are intact Keras archives.

    A quick check that needs no keras (the master process must not import JAX before
    forking): presence, zip structure, the members Keras needs and their CRCs. The
    workers load the models fully; anything subtler is reported by the record view.

    Raises
    ------
    ModelError
        With the file and what to do about it.
    """
    folder = Path(folder) if folder is not None else packaged_models_dir()
    for name, file in MODEL_FILES.items():
        path = folder / file
        if not path.is_file():
            raise ModelError(f"the {name} classifier's model file {path} is missing: run "
                             "`ecg train` to build it, or restore ecgcore/models/ from the "
                             "repository")
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                missing = [m for m in KERAS_MEMBERS if m not in names]
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ModelError(f"the {name} classifier's model file {path} is corrupt ({exc}): "
                             "rebuild it with `ecg train` or restore it from the "
                             "repository") from None
        if missing or bad is not None:
            what = f"lacks {', '.join(missing)}" if missing else f"has a damaged {bad}"
            raise ModelError(f"the {name} classifier's model file {path} is corrupt (it "
                             f"{what}): rebuild it with `ecg train` or restore it from the "
                             "repository")


def gunicorn_options(args: argparse.Namespace) -> dict:
    """gunicorn settings for the parsed ``ecg serve`` arguments."""
    return {
        "bind": f"{args.host}:{args.port}",
        "workers": args.workers,
        "threads": args.threads,
        "worker_class": "gthread",
        # Preparing a long record on a busy machine takes many seconds; the gthread
        # worker's heartbeat runs beside its request threads, so this only bounds a boot.
        "timeout": 180,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": "-" if args.access_log else None,
        "errorlog": "-",
        "loglevel": args.log_level,
        "proc_name": "ecg-serve",
        "preload_app": False,
        # Several servers may run at once (tests, benches): no shared control socket.
        "control_socket_disable": True,
    }


def _application(options: dict):
    from gunicorn.app.base import BaseApplication

    class DashboardApplication(BaseApplication):
        """gunicorn running the dashboard's Flask server, one app per worker."""

        def __init__(self, settings: dict) -> None:
            self.settings = settings
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.settings.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self):
            from dashboard.app import create_app

            app = create_app()
            # Dash sets itself up on its first request and marks that done before doing
            # it: a fresh worker's first concurrent requests would find no callbacks (a
            # 500). One request here, before the worker serves, does it single-threaded.
            app.server.test_client().get("/_dash-dependencies")
            return app.server

    return DashboardApplication(options)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ecg serve", description="Start the dashboard.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"worker processes (default {DEFAULT_WORKERS})")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"threads per worker (default {DEFAULT_THREADS})")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error", "critical"])
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--debug", action="store_true",
                        help="one process with Dash's dev tools instead of gunicorn")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.threads < 1:
        parser.error("--workers and --threads must be at least 1")
    return args


def serve_main(argv: list[str], *, models_dir: str | Path | None = None) -> int:
    """``ecg serve``: check the models and the session store, then run gunicorn.

    Parameters
    ----------
    argv : list of str
        The command's arguments (``--host``, ``--port``, ``--workers``, ``--threads``...).
    models_dir : path or None
        Folder checked for the classifier files (default: the packaged one, which the
        app loads); tests point it at a broken copy.

    Returns
    -------
    int
        0 after a clean stop, 2 when start-up is refused, gunicorn's status otherwise.
    """
    args = parse_args(argv)
    try:
        check_models(models_dir)
        from dashboard.state import open_session_store

        open_session_store()
    except EcgError as error:
        print(f"ecg serve: error: {error}", file=sys.stderr)
        return 2
    if args.debug:
        from dashboard.app import create_app

        create_app().run(host=args.host, port=args.port, debug=True)
        return 0
    # Inherited by the forked workers: the Live page reads it.
    os.environ[WORKERS_ENV] = str(args.workers)
    try:
        _application(gunicorn_options(args)).run()
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
