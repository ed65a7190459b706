"""Load test: simulated users against ``ecg serve`` (gunicorn) on loopback.

Starts the server itself (``ecg serve``'s default workers and threads, a fresh session store),
then runs N simulated users (asyncio + aiohttp) for a fixed time. Each user has its own
session id, like a browser tab, and loops over: loading a page, opening an MIT-BIH record
(the record view's callback), zooming (the waveform's relayout callback), explaining a
beat (the explain page's callback, SHAP) and uploading a 10-s WFDB record then opening
it, with 0.5-2 s of think time between actions. Requests are exactly what Dash's renderer
posts to ``/_dash-update-component``.

Reported: users, requests, errors (HTTP status other than 200, timeouts, exceptions,
and answers whose callback said the app failed), p50/p95/max latency per kind, the
server's memory (VmRSS of the gunicorn master and its workers, sampled every 2 s), and
the machine's load average. Results go to ``bench/results/load.json`` and ``load.md``.

Bounded: the run stops after ``--duration`` seconds (users finish their current request,
each with a 120-s timeout), then the server is stopped with SIGTERM.

Usage: ``python bench/load.py`` (20 users x 120 s) or ``python bench/load.py --quick``
(20 users x 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, mitdb_dir, write_results  # noqa: E402
from dashboard.serve import default_threads, default_workers  # noqa: E402

# The process helpers the serving tests use, rather than a second copy of them.
sys.path.insert(0, str(ROOT / "tests"))
from dash_client import children_of, free_port  # noqa: E402

RECORDS = ("100", "105", "208", "119")
"""Records the users browse (few enough to stay prepared in each worker's memory)."""
BEATS = (3, 10, 25, 40)
"""Beats users explain (explanations are kept per record once computed)."""
UPDATE = "/_dash-update-component"
TARGET_P95_S = 1.0


# --------------------------------------------------------------------------- the server


def rss_kib(pid: int) -> int:
    """Resident memory of one process (KiB), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_server(workers: int, threads: int, folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "ECG_SESSIONS_DIR": str(folder / "sessions"),
           "ECG_MITDB_DIR": str(mitdb_dir())}
    env.pop("ECG_REDIS_URL", None)
    ecg = Path(sys.executable).parent / "ecg"
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen(
        [str(ecg), "serve", "--port", str(port), "--workers", str(workers),
         "--threads", str(threads)], env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- the client


class Stats:
    """Latencies and errors per kind of request."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {}
        self.errors: dict[str, list[str]] = {}
        self.app_errors: dict[str, list[str]] = {}

    def add(self, kind: str, seconds: float) -> None:
        self.latency.setdefault(kind, []).append(seconds)

    def error(self, kind: str, what: str) -> None:
        self.errors.setdefault(kind, []).append(what)


def _outputs(dep: dict) -> list[dict]:
    out = []
    for part in dep["output"].strip(".").split("..."):
        ident, _, prop = part.rpartition(".")
        out.append({"id": ident, "property": prop.split("@")[0]})
    return out


def _with_values(items: list[dict], values: dict) -> list:
    body = []
    for item in items:
        if item["id"].startswith("{"):
            body.append([])  # a pattern-matching (ALL) input with no matching component
        else:
            body.append({**item, "value": values.get(f"{item['id']}.{item['property']}")})
    return body


class User:
    """One simulated browser tab."""

    def __init__(self, k: int, client, base: str, deps: list[dict], stats: Stats,
                 upload_files: dict[str, bytes], stop_at: float, rng: random.Random) -> None:
        self.k, self.client, self.base, self.deps = k, client, base, deps
        self.stats, self.files, self.stop_at, self.rng = stats, upload_files, stop_at, rng
        self.session = f"load-user-{k}-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
        self.record: str | None = None
        self.ready: dict | None = None
        self.drawn: dict | None = None

    def dep(self, part: str) -> dict:
        return next(d for d in self.deps if part in d["output"])

    async def call(self, kind: str, part: str, values: dict, changed: list[str]):
        dep = self.dep(part)
        outputs = _outputs(dep)
        body = {"output": dep["output"],
                "outputs": outputs if dep["output"].startswith("..") else outputs[0],
                "inputs": _with_values(dep["inputs"], values),
                "state": _with_values(dep["state"], values), "changedPropIds": changed}
        return await self.request(kind, "POST", UPDATE, body)

    async def request(self, kind: str, method: str, path: str, body=None):
        import aiohttp

        start = time.perf_counter()
        try:
            async with self.client.request(
                method, self.base + path, json=body,
                timeout=aiohttp.ClientTimeout(total=120),
            ) as response:
                text = await response.text()
                elapsed = time.perf_counter() - start
                self.stats.add(kind, elapsed)
                if response.status == 204:
                    return {}
                if response.status != 200:
                    self.stats.error(kind, f"HTTP {response.status}")
                    return None
                return json.loads(text) if path == UPDATE else text
        except Exception as exc:  # noqa: BLE001 -- every failure is counted, none stops a user
            self.stats.add(kind, time.perf_counter() - start)
            self.stats.error(kind, f"{type(exc).__name__}: {exc}"[:200])
            return None

    def app_error(self, kind: str, answer: dict, output: str) -> None:
        """Count an answer whose callback reported a failure (a danger alert)."""
        text = json.dumps((answer or {}).get("response", {}).get(output, ""))
        if '"color": "danger"' in text:
            self.stats.app_errors.setdefault(kind, []).append(text[:300])

    async def open_record(self, record: str) -> None:
        answer = await self.call("open record", "rec-info.children",
                                 {"rec-id.data": record, "session-id.data": self.session,
                                  "rec-layers.value": []}, ["rec-id.data"])
        if answer:
            response = answer.get("response", {})
            self.app_error("open record", answer, "rec-alerts")
            self.ready = response.get("rec-ready", {}).get("data")
            self.drawn = response.get("rec-view", {}).get("data")
            self.record = record if self.ready else None

    async def zoom(self) -> None:
        if not self.ready or not self.drawn:
            await self.open_record(self.rng.choice(RECORDS))
            return
        duration = float(self.ready["duration"])
        span = self.rng.choice([2.0, 8.0, 30.0, 300.0, duration])
        start = self.rng.uniform(0, max(0.0, duration - span))
        answer = await self.call(
            "zoom", "rec-nav-msg.children",
            {"rec-wave.relayoutData": {"xaxis.range[0]": start, "xaxis.range[1]": start + span},
             "rec-leads.value": self.drawn.get("leads", [0]), "rec-layers.value": [],
             "rec-view.data": self.drawn, "rec-selected.data": None,
             "rec-ready.data": self.ready, "session-id.data": self.session},
            ["rec-wave.relayoutData"])
        if answer:
            view = answer.get("response", {}).get("rec-view", {}).get("data")
            self.drawn = view or self.drawn

    async def explain(self) -> None:
        record = self.record or self.rng.choice(RECORDS)
        answer = await self.call("explain beat", "explain-body.children",
                                 {"explain-params.data": {"record": record,
                                                          "beat": self.rng.choice(BEATS)},
                                  "session-id.data": self.session}, ["explain-params.data"])
        if answer:
            self.app_error("explain beat", answer, "explain-body")

    async def upload(self) -> None:
        contents = ["data:application/octet-stream;base64," + base64.b64encode(d).decode()
                    for d in self.files.values()]
        answer = await self.call("upload", "up-status.children",
                                 {"up-files.contents": contents,
                                  "up-files.filename": list(self.files),
                                  "session-id.data": self.session}, ["up-files.contents"])
        if not answer:
            return
        text = json.dumps(answer)
        marker = '"/record/'
        if marker not in text:
            self.stats.app_errors.setdefault("upload", []).append(text[:300])
            return
        start = text.index(marker) + len(marker)
        await self.open_record(text[start:text.index('"', start)])

    async def page(self) -> None:
        path = self.rng.choice(["/records", "/upload", f"/record/{self.rng.choice(RECORDS)}"])
        await self.request("page", "GET", path)
        await self.request("page", "GET", "/_dash-layout")

    async def run(self) -> None:
        actions = [(self.page, 2), (lambda: self.open_record(self.rng.choice(RECORDS)), 3),
                   (self.zoom, 6), (self.explain, 1), (self.upload, 1)]
        funcs = [a for a, _ in actions]
        weights = [w for _, w in actions]
        # Users arrive over the first few seconds, not all in the same millisecond.
        await asyncio.sleep(self.rng.uniform(0, 3))
        while time.monotonic() < self.stop_at:
            await self.rng.choices(funcs, weights)[0]()
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))


async def run_users(base: str, n_users: int, duration_s: float, files: dict[str, bytes],
                    seed: int) -> Stats:
    import aiohttp

    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:
        async with client.get(base + "/_dash-dependencies") as response:
            deps = await response.json()
        stop_at = time.monotonic() + duration_s
        rng = random.Random(seed)
        users = [User(k, client, base, deps, stats, files, stop_at,
                      random.Random(rng.random())) for k in range(n_users)]
        await asyncio.gather(*(u.run() for u in users))
    return stats


async def warm_up(base: str, files: dict[str, bytes]) -> None:
    """Prepare the browsed records in the workers (not measured): first visits analyse."""
    stats = Stats()
    await run_users_once(base, files, stats)


async def run_users_once(base: str, files: dict[str, bytes], stats: Stats) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as client:
        async with client.get(base + "/_dash-dependencies") as response:
            deps = await response.json()
        user = User(0, client, base, deps, stats, files, 0.0, random.Random(0))
        # Several opens at once, so both workers get some of them.
        for record in RECORDS:
            await asyncio.gather(*(user.open_record(record) for _ in range(3)))


# --------------------------------------------------------------------------- report


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def summarise(stats: Stats) -> dict:
    kinds = {}
    callbacks: list[float] = []
    for kind, values in sorted(stats.latency.items()):
        kinds[kind] = {
            "requests": len(values), "errors": len(stats.errors.get(kind, [])),
            "app_errors": len(stats.app_errors.get(kind, [])),
            "p50_s": percentile(values, 50), "p95_s": percentile(values, 95),
            "max_s": max(values), "mean_s": statistics.fmean(values),
        }
        if kind != "page":
            callbacks.extend(values)
    return {
        "kinds": kinds,
        "requests": sum(len(v) for v in stats.latency.values()),
        "errors": sum(len(v) for v in stats.errors.values()),
        "app_errors": sum(len(v) for v in stats.app_errors.values()),
        "callback_requests": len(callbacks),
        "callback_p50_s": percentile(callbacks, 50),
        "callback_p95_s": percentile(callbacks, 95),
        "error_samples": {k: v[:3] for k, v in stats.errors.items()},
        "app_error_samples": {k: v[:2] for k, v in stats.app_errors.items()},
    }


def markdown(result: dict) -> str:
    s = result["summary"]
    mem = result["memory"]
    lines = [
        "# Load test: simulated users against `ecg serve` (gunicorn) on loopback",
        "",
        f"Measured {result['machine']['date']} by `{result['command']}` on "
        f"{result['machine']['cpus']} CPUs (load average before: "
        f"{result['loadavg_before']}, after: {result['loadavg_after']}; the machine was "
        "shared with other work, so latencies are pessimistic).",
        "",
        f"- Server: {result['workers']} workers x {result['threads']} threads (gthread), "
        "disk session store",
        f"- Users: {result['users']} for {result['duration_s']:.0f} s "
        f"(think time 0.5-2 s between actions)",
        f"- Requests: {s['requests']} ({s['callback_requests']} callbacks), "
        f"errors: **{s['errors']}**, callbacks reporting a failure: {s['app_errors']}",
        f"- Callback latency: p50 {s['callback_p50_s']:.3f} s, **p95 "
        f"{s['callback_p95_s']:.3f} s** (target <= {TARGET_P95_S:.0f} s: "
        f"{'met' if s['callback_p95_s'] <= TARGET_P95_S else 'missed'})",
        f"- Server memory (VmRSS, master + workers): start {mem['start_mib']:.0f} MiB, "
        f"peak {mem['peak_mib']:.0f} MiB, end {mem['end_mib']:.0f} MiB "
        f"(per process at the end: {mem['end_per_process_mib']})",
        "",
        "| kind | requests | errors | failures | p50 (s) | p95 (s) | max (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, k in s["kinds"].items():
        lines.append(f"| {kind} | {k['requests']} | {k['errors']} | {k['app_errors']} | "
                     f"{k['p50_s']:.3f} | {k['p95_s']:.3f} | {k['max_s']:.3f} |")
    if s["error_samples"]:
        lines += ["", "Errors (first of each kind):", ""]
        lines += [f"- {k}: {v}" for k, v in s["error_samples"].items()]
    if s["app_error_samples"]:
        lines += ["", "Callback failures (first of each kind):", ""]
        lines += [f"- {k}: {v}" for k, v in s["app_error_samples"].items()]
    lines += ["", "Kinds: `page` = a page's HTML plus `/_dash-layout`; `open record` = the "
              "record view's callback (read, cached analysis, first view); `zoom` = the "
              "waveform's relayout callback; `explain beat` = SHAP attributions of both "
              "models (kept per record once computed); `upload` = a 10-s WFDB record (.hea "
              "+ .dat) through the upload callback, then opened.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--quick", action="store_true", help="20 s of load instead")
    # `ecg serve`'s defaults (ECG_SERVE_WORKERS / ECG_SERVE_THREADS override them).
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    duration = 20.0 if args.quick else args.duration

    mitdb = mitdb_dir()
    header = (mitdb / "100.hea").read_text().replace("650000", "3600", 1)
    files = {"100.hea": header.encode(), "100.dat": (mitdb / "100.dat").read_bytes()[:10800]}

    with tempfile.TemporaryDirectory(prefix="ecg-load-") as tmp:
        folder = Path(tmp)
        process, base = start_server(args.workers, args.threads, folder)
        try:
            import urllib.request

            deadline = time.monotonic() + 300
            while True:
                try:
                    with urllib.request.urlopen(base + "/_dash-dependencies", timeout=10):
                        break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        print((folder / "serve.log").read_text()[-3000:], file=sys.stderr)
                        return 1
                    time.sleep(0.5)
            print(f"server up at {base}; warming up the records", flush=True)
            asyncio.run(warm_up(base, files))
            pids = [process.pid, *children_of(process.pid)]
            start_mib = sum(rss_kib(p) for p in pids) / 1024
            loadavg_before = os.getloadavg()
            peak = [start_mib]

            async def sample_memory(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    current = [process.pid, *children_of(process.pid)]
                    peak[0] = max(peak[0], sum(rss_kib(p) for p in current) / 1024)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 2.0)

            async def measured() -> Stats:
                stop = asyncio.Event()
                sampler = asyncio.create_task(sample_memory(stop))
                stats = await run_users(base, args.users, duration, files, args.seed)
                stop.set()
                await sampler
                return stats

            print(f"{args.users} users for {duration:.0f} s", flush=True)
            started = time.monotonic()
            stats = asyncio.run(measured())
            elapsed = time.monotonic() - started
            pids = [process.pid, *children_of(process.pid)]
            end = {p: rss_kib(p) / 1024 for p in pids}
            loadavg_after = os.getloadavg()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        server_log = (folder / "serve.log").read_text(errors="replace")

    result = {
        "command": "python bench/load.py" + (" --quick" if args.quick else "")
        + ("" if args.users == 20 else f" --users {args.users}")
        + ("" if args.workers == default_workers() else f" --workers {args.workers}")
        + ("" if args.threads == default_threads() else f" --threads {args.threads}"),
        "machine": machine(),
        "users": args.users, "duration_s": duration, "elapsed_s": elapsed,
        "workers": args.workers, "threads": args.threads,
        "loadavg_before": [round(x, 2) for x in loadavg_before],
        "loadavg_after": [round(x, 2) for x in loadavg_after],
        "summary": summarise(stats),
        "memory": {
            "start_mib": start_mib, "peak_mib": peak[0], "end_mib": sum(end.values()),
            "end_per_process_mib": [round(v) for v in end.values()],
        },
        "server_tracebacks": server_log.count("Traceback"),
        "server_exit": process.returncode,
    }
    text = markdown(result)
    if result["server_tracebacks"]:
        text += f"\nThe server logged {result['server_tracebacks']} traceback(s).\n"
    if args.no_write:
        print(text)
    else:
        write_results("load", result, text)
    return 0 if result["summary"]["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
