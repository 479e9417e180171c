"""How fast a finished run's page comes up in the inspector (issue #18's latency goals).

One job is narrated into a fresh EMOFLOW_HOME (a `python -m emoflow.cli narrate` process, espeak,
256 px), then the inspector is started as its own process (`uvicorn --factory
emoflow.web.app:create_app` on loopback) and warmed. Measured, all against GET /ui/runs/{id}:
- first paint in Chromium (Playwright): the `first-contentful-paint` entry, median of --navigations
  (10) fresh navigations of a logged-in tab; with the navigation's responseStart beside it;
- the page's server time, sequentially from one keep-alive client: median of --requests (20);
- the same GET under --viewers (20) concurrent viewers (threads, one client each), --load (200)
  requests in all: 50th and 95th percentile, max, and requests per second.
The goals: first paint < 300 ms with a warm server; 95th percentile under 20 viewers < 1 s.

Writes bench/results/inspector_latency.json and prints a Markdown table for bench/README.md.
Run: .venv/bin/python bench/inspector_latency.py [--out bench/results/inspector_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
JOB = """name: latency
portrait: skimage:astronaut
script: >
  Good evening, and thank you for being here. They promised us the harbour would be safe,
  and they broke that promise. Never again will we stay silent.
  We lost three friends that night, and we miss them every single day.
description: calm at first, angry at "never again", sad at the end
tts_engine: espeak
size: 256
output_dir: out
"""
COOKIE = "emoflow_token"  # emoflow.web.auth.COOKIE, without importing the app here
FIRST_PAINT = """() => new Promise((done) => {
    const found = () => performance.getEntriesByName("first-contentful-paint")[0];
    const nav = performance.getEntriesByType("navigation")[0];
    const report = (paint) => done({ fcp: paint.startTime, response_start: nav.responseStart,
                                     dom_content_loaded: nav.domContentLoadedEventEnd });
    if (found()) return report(found());
    new PerformanceObserver((list) => {
        const paint = list.getEntriesByName("first-contentful-paint")[0];
        if (paint) report(paint);
    }).observe({ type: "paint", buffered: true });
})"""
CHROMIUM_FLAGS = [  # as tests/web/test_browser.py: headless, no background traffic
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def narrate(folder: Path, env: dict[str, str]) -> str:
    (folder / "job.yaml").write_text(JOB)
    subprocess.run(
        [sys.executable, "-m", "emoflow.cli", "narrate", "job.yaml"],
        env=env | {"EMOFLOW_PREFECT_SERVER": "ephemeral"},  # Prefect's server ends with the process
        cwd=folder,
        check=True,
        capture_output=True,
    )
    store = open_home(folder)
    try:
        (run,) = [r for r in store.list_runs(10) if r.status == "succeeded"]
        return run.id
    finally:
        store.close()


def open_home(folder: Path) -> Any:
    """The home's store, as the settings name it (the CLI's and the server's)."""
    os.environ["EMOFLOW_HOME"] = str(folder / "home")
    from kernel.settings import get_settings
    from stores.store import ArtifactStore

    return ArtifactStore.from_settings(get_settings())


def viewer_token(folder: Path) -> str:
    from stores.tokens import create_token

    store = open_home(folder)
    try:
        return create_token(store, "bench-viewer", "viewer", actor="bench")[1]
    finally:
        store.close()


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "--factory", "emoflow.web.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ui/login", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the inspector did not start within 120 s")


def first_paints(url: str, secret: str, navigations: int) -> list[dict[str, float]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": COOKIE, "value": secret, "url": url.split("/ui/")[0]}])
        page = context.new_page()
        for _ in range(3):  # warm: the browser's connection, its cache of app.css and page.css
            page.goto(url)
        timings = []
        for _ in range(navigations):
            page.goto("about:blank")
            page.goto(url, wait_until="load")
            timings.append(page.evaluate(FIRST_PAINT))
        browser.close()
    return timings


def sequential(url: str, secret: str, requests: int) -> list[float]:
    with httpx.Client(cookies={COOKIE: secret}) as client:
        for _ in range(5):
            client.get(url).raise_for_status()
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            client.get(url).raise_for_status()
            times.append(time.perf_counter() - started)
    return times


def concurrent(url: str, secret: str, viewers: int, total: int) -> tuple[list[float], float]:
    per_viewer = total // viewers

    def viewer(_: int) -> list[float]:
        times = []
        with httpx.Client(cookies={COOKIE: secret}, timeout=60) as client:
            for _ in range(per_viewer):
                started = time.perf_counter()
                client.get(url).raise_for_status()
                times.append(time.perf_counter() - started)
        return times

    started = time.perf_counter()
    with ThreadPoolExecutor(viewers) as pool:
        times = [t for batch in pool.map(viewer, range(viewers)) for t in batch]
    return times, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "inspector_latency.json")
    parser.add_argument("--navigations", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--load", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="emoflow-bench-inspector-") as tmp:
        folder = Path(tmp)
        own = ("EMOFLOW_", "PREFECT_")
        env = {key: value for key, value in os.environ.items() if not key.startswith(own)}
        env |= {"EMOFLOW_HOME": str(folder / "home"), "PYTHONPATH": str(ROOT)}
        print("narrating one job ...", flush=True)
        run_id = narrate(folder, env)
        secret = viewer_token(folder)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = start_server(env, port)
        url = f"http://127.0.0.1:{port}/ui/runs/{run_id}"
        try:
            page_bytes = len(httpx.get(url, cookies={COOKIE: secret}).content)
            print("first paint in Chromium ...", flush=True)
            paints = first_paints(url, secret, args.navigations)
            print("server time ...", flush=True)
            serial = sequential(url, secret, args.requests)
            print(f"{args.viewers} concurrent viewers ...", flush=True)
            loaded, wall = concurrent(url, secret, args.viewers, args.load)
        finally:
            server.terminate()
            server.wait(30)

    fcp = [p["fcp"] for p in paints]
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "page_bytes": page_bytes,
        "first_paint": {
            "navigations": len(paints),
            "fcp_median_ms": round(statistics.median(fcp), 1),
            "fcp_max_ms": round(max(fcp), 1),
            "response_start_median_ms": round(statistics.median(p["response_start"] for p in paints), 1),
            "dom_content_loaded_median_ms": round(
                statistics.median(p["dom_content_loaded"] for p in paints), 1
            ),
            "samples_ms": [round(v, 1) for v in fcp],
        },
        "server": {
            "requests": len(serial),
            "median_ms": ms(statistics.median(serial)),
            "p95_ms": ms(percentile(serial, 95)),
            "samples_ms": [ms(v) for v in serial],
        },
        "concurrent": {
            "viewers": args.viewers,
            "requests": len(loaded),
            "p50_ms": ms(percentile(loaded, 50)),
            "p95_ms": ms(percentile(loaded, 95)),
            "max_ms": ms(max(loaded)),
            "requests_per_s": round(len(loaded) / wall, 1),
        },
        "goals": {"first_paint_ms": 300, "p95_under_20_viewers_ms": 1000},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(markdown(result))
    return 0


def markdown(result: dict[str, Any]) -> str:
    paint, server, load = result["first_paint"], result["server"], result["concurrent"]
    return "\n".join(
        [
            "| measure | value | goal |",
            "|---|---|---|",
            f"| first contentful paint, median of {paint['navigations']} (max) | "
            f"{paint['fcp_median_ms']:.0f} ms ({paint['fcp_max_ms']:.0f}) | < 300 ms |",
            f"| response start in the browser, median | {paint['response_start_median_ms']:.0f} ms | |",
            f"| GET /ui/runs/{{id}}, one client, median of {server['requests']} (p95) | "
            f"{server['median_ms']:.0f} ms ({server['p95_ms']:.0f}) | |",
            f"| the same GET, {load['viewers']} concurrent viewers, {load['requests']} requests: p50 | "
            f"{load['p50_ms']:.0f} ms | |",
            f"| ... p95 (max) | {load['p95_ms']:.0f} ms ({load['max_ms']:.0f}) | < 1000 ms |",
            f"| ... throughput | {load['requests_per_s']:.1f} pages/s | |",
            f"| page size | {result['page_bytes'] / 1024:.0f} KiB | |",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
