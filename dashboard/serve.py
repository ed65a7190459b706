"""``ecg serve``: the dashboard under gunicorn (several worker processes, each threaded).

Every worker builds its own app from :func:`dashboard.app.create_app` (no app is built
in the master, so nothing with threads, such as JAX, is ever forked). Uploads and the
state of Live streams live in the shared session store (:mod:`dashboard.state`: SQLite on
disk, or Redis), so any worker can serve any session: a Live stream runs in the worker
that started it and is published there for the others (:class:`dashboard.live.LiveHub`).

Before forking anything the master checks what would otherwise fail in every
worker: the classifier files and the session store; a problem is one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

from ecgcore.errors import EcgError, ModelError

# Two processes by default: one per core here, so a CPU-bound callback (SHAP, a first
# analysis) in one does not hold the other's requests behind its GIL. Each worker costs
# its own copy of the stack and models (about 0.5-1 GB). Threads serve the waiting
# (I/O, the other process's work, Live polls).
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 8
WORKERS_ENV = "ECG_SERVE_WORKERS"
"""Environment variable overriding the default number of workers."""
THREADS_ENV = "ECG_SERVE_THREADS"
"""Environment variable overriding the default threads per worker."""
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


SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def worker_environment(workers: int, cpus: int | None, env: dict[str, str]) -> dict[str, str]:
    """Environment variables giving each worker's numeric libraries its share of the cores.

    Every worker process would otherwise size its BLAS/OpenMP pools and XLA's CPU pool to
    all the cores, so N workers run N times too many compute threads against each other.
    Variables already set are left alone.

    Parameters
    ----------
    workers : int
        Worker processes.
    cpus : int or None
        Cores of the machine (``os.cpu_count()``).
    env : dict
        The current environment.

    Returns
    -------
    dict
        The variables to set (empty when each worker may use several cores).
    """
    share = max(1, (cpus or 1) // max(1, workers))
    if workers <= 1:
        return {}
    out = {name: str(share) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                         "MKL_NUM_THREADS") if name not in env}
    flags = env.get("XLA_FLAGS", "")
    if share == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        out["XLA_FLAGS"] = f"{flags} {SINGLE_THREAD_XLA}".strip()
    return out


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
        "post_fork": _limit_blas_threads,
    }


def _limit_blas_threads(_server, _worker) -> None:
    # numpy's BLAS was loaded by the master (the session store's check) with a pool sized
    # to every core; each worker keeps its share (see worker_environment).
    share = os.environ.get("OPENBLAS_NUM_THREADS")
    if not share:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=int(share))


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


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"ecg serve: error: {name}={value!r} is not a whole number") from None


def default_workers() -> int:
    """Worker processes when ``--workers`` is not given: ``$ECG_SERVE_WORKERS`` or 2."""
    return _env_int(WORKERS_ENV, DEFAULT_WORKERS)


def default_threads() -> int:
    """Threads per worker when ``--threads`` is not given: ``$ECG_SERVE_THREADS`` or 8."""
    return _env_int(THREADS_ENV, DEFAULT_THREADS)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ecg serve", description="Start the dashboard.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    workers, threads = default_workers(), default_threads()
    parser.add_argument("--workers", type=int, default=workers,
                        help=f"worker processes (default {workers}; ${WORKERS_ENV})")
    parser.add_argument("--threads", type=int, default=threads,
                        help=f"threads per worker (default {threads}; ${THREADS_ENV})")
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

        store = open_session_store()
        # No SQLite connection may cross the fork of the workers: each opens its own.
        close = getattr(store.backend, "close", None)
        if close is not None:
            close()
    except EcgError as error:
        print(f"ecg serve: error: {error}", file=sys.stderr)
        return 2
    if args.debug:
        from dashboard.app import create_app

        create_app().run(host=args.host, port=args.port, debug=True)
        return 0
    # Read by XLA when a worker first uses JAX (never in this master).
    os.environ.update(worker_environment(args.workers, os.cpu_count(), dict(os.environ)))
    try:
        _application(gunicorn_options(args)).run()
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
