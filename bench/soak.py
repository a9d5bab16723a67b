"""Soak: mixed traffic at a fixed rate through nginx to three idp nodes, for ten minutes.

Issue 9, item 8. The cluster is the one the multi-node tests use (``tests/cluster.py``): one
PostgreSQL database and one Redis prefix of its own, ``--nodes`` gunicorn servers (``--workers``
each) and Debian's nginx balancing round-robin in front; production argon2id parameters.

Load is open-loop: a scheduler starts one operation every ``1 / --rate`` seconds whatever the
previous ones are doing (a thread pool runs them), so slow answers show up as latency, not as a
lower offered rate. Operations, by weight: password sign-in (GET /login, POST /login, the
account page), refresh-token rotation, introspection, userinfo, the activity log page.

Printed: throughput per operation and in all, p50/p99 latency per operation, errors (target 0),
and the resident memory of every idp process (gunicorn masters and workers) after the warm-up
and at the end (target: no process grows by more than 10%).

    .venv/bin/python bench/soak.py                  # 10 minutes at 30 operations/s
    .venv/bin/python bench/soak.py --duration 60    # a quick check
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster import Cluster, running_cluster  # noqa: E402
from tests.helpers import PASSWORD  # noqa: E402
from tests.oidc import Browser, RelyingParty, register_client  # noqa: E402

WEIGHTS = {"sign_in": 1, "refresh": 2, "introspect": 4, "userinfo": 4, "activity": 2}
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@dataclass
class Slot:
    """One relying-party session: its tokens, rotated by refreshes (one user at a time)."""

    access_token: str
    refresh_token: str
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies[op].append(seconds)
            if error is not None:
                self.errors[op] += 1
                if len(self.samples) < 10:
                    self.samples.append(f"{op}: {error}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def idp_processes(cluster: Cluster) -> dict[str, int]:
    """name -> pid of every node's gunicorn master and workers."""
    found: dict[str, int] = {}
    for index, node in enumerate(cluster.nodes):
        assert node.process is not None
        master = node.process.pid
        found[f"node{index} master"] = master
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        for n, child in enumerate(sorted(int(c) for c in children)):
            found[f"node{index} worker{n}"] = child
    return found


class Traffic:
    def __init__(self, cluster: Cluster, users: list[str], slots: list[Slot], rp: RelyingParty,
                 browsers: list[tuple[Browser, threading.Lock]], results: Results) -> None:
        self.cluster = cluster
        self.users = users
        self.slots = slots
        self.rp = rp
        self.browsers = browsers
        self.results = results
        self.ops = [op for op, weight in WEIGHTS.items() for _ in range(weight)]

    def run_one(self, rng: random.Random) -> None:
        op = rng.choice(self.ops)
        started = time.perf_counter()
        try:
            error = getattr(self, op)(rng)
        except Exception as exc:  # a failed request is an error in the figures
            error = f"{type(exc).__name__}: {exc}"[:200]
        self.results.record(op, time.perf_counter() - started, error)

    def sign_in(self, rng: random.Random) -> str | None:
        browser = Browser(self.cluster.base)
        browser.http.headers["User-Agent"] = USER_AGENT
        page = browser.http.get(self.cluster.base + "/login", timeout=30)
        done = browser.sign_in_form(page, rng.choice(self.users), PASSWORD)
        if done.status_code != 303:
            return f"POST /login answered {done.status_code}"
        account = browser.http.get(self.cluster.base + "/account", timeout=30)
        return None if account.status_code == 200 else f"/account {account.status_code}"

    def refresh(self, rng: random.Random) -> str | None:
        slot = rng.choice(self.slots)
        with slot.lock:
            response = self.rp.refresh(slot.refresh_token)
            if response.status_code != 200:
                return f"refresh answered {response.status_code} {response.text[:80]}"
            body = response.json()
            slot.access_token, slot.refresh_token = body["access_token"], body["refresh_token"]
        return None

    def introspect(self, rng: random.Random) -> str | None:
        slot = rng.choice(self.slots)
        with slot.lock:
            token = slot.access_token
        body = self.rp.introspect(token).json()
        return None if body.get("active") is True else f"introspection said {body}"

    def userinfo(self, rng: random.Random) -> str | None:
        slot = rng.choice(self.slots)
        with slot.lock:
            token = slot.access_token
        response = self.rp.userinfo(token)
        return None if response.status_code == 200 else f"userinfo {response.status_code}"

    def activity(self, rng: random.Random) -> str | None:
        browser, lock = rng.choice(self.browsers)
        with lock:
            page = browser.http.get(self.cluster.base + "/account/activity",
                                    allow_redirects=False, timeout=30)
        return None if page.status_code == 200 else f"activity {page.status_code}"


def prepare(cluster: Cluster, users: list[str], sessions: int) -> tuple[
        RelyingParty, list[Slot], list[tuple[Browser, threading.Lock]]]:
    rp = RelyingParty(cluster.base, register_client(cluster.runtime, "Soak"))
    slots, browsers = [], []
    for index in range(sessions):
        browser = Browser(cluster.base)
        browser.http.headers["User-Agent"] = USER_AGENT
        url, _state, _nonce, verifier = rp.authorization_url()
        response = browser.follow(url, email=users[index % len(users)])
        location = response.headers["Location"]
        from urllib.parse import parse_qs, urlsplit

        code = parse_qs(urlsplit(location).query)["code"][0]
        tokens: dict[str, Any] = rp.exchange(code, verifier)
        slots.append(Slot(tokens["access_token"], tokens["refresh_token"]))
        browsers.append((browser, threading.Lock()))
    return rp, slots, browsers


def report(results: Results, duration: float, rate: float, memory: dict[str, tuple[int, int]]
           ) -> int:
    total = sum(len(v) for v in results.latencies.values())
    errors = sum(results.errors.values())
    print(f"\nthroughput: {total / duration:.1f} operations/s (offered {rate:g}/s), "
          f"{total} operations in {duration:.0f} s")
    print(f"{'operation':<12}{'count':>8}{'per s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for op in WEIGHTS:
        values = sorted(results.latencies.get(op, []))
        if not values:
            continue
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        print(f"{op:<12}{len(values):>8}{len(values) / duration:>8.1f}"
              f"{1000 * statistics.median(values):>9.1f}{1000 * p99:>9.1f}"
              f"{results.errors.get(op, 0):>8}")
    print(f"errors: {errors}  (target 0)")
    for sample in results.samples:
        print(f"  e.g. {sample}")
    print("\nresident memory (after warm-up -> end):")
    worst = 0.0
    for name, (before, after) in memory.items():
        growth = 100.0 * (after - before) / before if before else 0.0
        worst = max(worst, growth)
        print(f"  {name:<16}{before / 1024:>8.1f} MiB -> {after / 1024:>7.1f} MiB  "
              f"({growth:+.1f}%)")
    print(f"largest growth: {worst:+.1f}%  (target <= +10%)")
    return 0 if errors == 0 and worst <= 10.0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before measuring")
    parser.add_argument("--rate", type=float, default=30.0, help="operations per second")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per node")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=20, help="relying-party sessions")
    opts = parser.parse_args(argv)
    users = [f"soak{i}@example.com" for i in range(opts.users)]
    with tempfile.TemporaryDirectory(prefix="idp-soak-") as tmp, running_cluster(
        Path(tmp), nodes=opts.nodes, workers=opts.workers, users=tuple(users),
        argon2_memory_kib="19456", argon2_time_cost="2",
        login_attempts_per_ip_per_minute="1000000", login_attempts_global_per_minute="1000000",
    ) as cluster:
        print(f"idp soak: {opts.nodes} nodes x {opts.workers} workers behind nginx, "
              f"{opts.rate:g} operations/s for {opts.duration:g} s after {opts.warmup:g} s "
              f"warm-up; mix {WEIGHTS}", flush=True)
        rp, slots, browsers = prepare(cluster, users, opts.sessions)
        results = Results()
        traffic = Traffic(cluster, users, slots, rp, browsers, results)
        rng = random.Random(1)
        processes = idp_processes(cluster)
        memory: dict[str, tuple[int, int]] = {}
        with ThreadPoolExecutor(max_workers=32) as pool:
            interval = 1.0 / opts.rate
            start = time.monotonic()
            measured_from = start + opts.warmup
            end = measured_from + opts.duration
            tick = start
            warm = True
            while tick < end:
                now = time.monotonic()
                if warm and now >= measured_from:
                    warm = False
                    results.latencies.clear()
                    results.errors.clear()
                    results.samples.clear()
                    memory = {n: (rss_kib(p), 0) for n, p in processes.items()}
                if tick > now:
                    time.sleep(tick - now)
                pool.submit(traffic.run_one, random.Random(rng.random()))
                tick += interval
        memory = {n: (before, rss_kib(processes[n])) for n, (before, _) in memory.items()}
        return report(results, opts.duration, opts.rate, memory)


if __name__ == "__main__":
    sys.exit(main())
