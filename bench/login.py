"""Browser-like password sign-ins per second against gunicorn, next to raw argon2id verifications.

Each sign-in verifies one argon2id hash, so the machine's argon2id verification rate (all cores,
production parameters) is the upper bound for sign-ins. This script measures both in one run
and prints the ratio; see bench/README.md.

Setup: its own PostgreSQL database (dropped at the end), its own Redis key prefix (deleted at
the end), ``--users`` accounts, then ``gunicorn 'idp:create_app()' --workers N`` on a free
loopback port. Load: ``--clients`` processes x ``--threads`` threads, each a simulated browser
(own cookie jar) doing a full sign-in as the issue defines it: GET /login, POST /login, the
redirect to GET /account (must show the user's email). Then the browser forgets its session
cookie (it keeps its device cookies, like a returning browser) — or, with ``--logout``, signs
out with POST /logout, which is extra work outside the measured flow. Only 127.0.0.1 is
ever contacted.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import multiprocessing as mp
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from common import (
    HOST,
    CpuUsage,
    base_settings,
    cpu_snapshot,
    free_port,
    gunicorn,
    log_tail,
    machine_cpu,
    percentile,
    postgres_database,
    redis_prefix,
    sleep_until,
)

USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
SESSION_COOKIE = "idp_session"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
SPAWN = mp.get_context("spawn")  # children start clean: no inherited sockets or engines


# Configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Command-line options."""

    duration: float
    argon2_duration: float
    warmup: float
    workers: int
    users: int
    clients: int
    threads: int
    client: str
    logout: bool
    compare_alerts: bool


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of measured sign-in load (default 20)"
    )
    parser.add_argument(
        "--argon2-duration",
        type=float,
        default=10.0,
        help="seconds of raw argon2id verifications (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds of unmeasured load before the window (default 3)",
    )
    parser.add_argument(
        "--compare-alerts",
        action="store_true",
        help="run the load twice, login alerts off then on for every sign-in, and print the "
        "ratio (uses at least 1000 users so no account reaches the alert rate cap)",
    )
    parser.add_argument(
        "--logout",
        action="store_true",
        help="sign out after each sign-in instead of dropping the session cookie",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--users", type=int, default=50, help="accounts to create (default 50)")
    parser.add_argument(
        "--clients", type=int, default=2, help="load-generator processes (default 2)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=4,
        help="simulated browsers per load-generator process (default 4)",
    )
    parser.add_argument(
        "--client",
        choices=("http", "requests"),
        default="http",
        help="HTTP client: http.client (light, default) or requests.Session",
    )
    ns = parser.parse_args(argv)
    opts = Options(**vars(ns))
    if min(opts.duration, opts.argon2_duration) <= 0 or opts.warmup < 0:
        parser.error("durations must be positive")
    if min(opts.workers, opts.users, opts.clients, opts.threads) < 1:
        parser.error("--workers, --users, --clients and --threads must be at least 1")
    return opts


def user_email(index: int) -> str:
    return f"bench-{index:05d}@example.com"


def user_password(index: int) -> str:
    return f"bench passphrase number {index:05d} tulip"


# The sign-in rate limits (per client IP, and for everyone together) would refuse a load
# generator on one address; they stay active, so their cost is measured, but never trip.
LIFTED_LIMITS = {
    "login_attempts_per_ip_per_minute": "1000000000",
    "login_attempts_global_per_minute": "1000000000",
}


def server_settings(database_url: str, prefix: str, data_dir: Path, port: int) -> dict[str, str]:
    """idp settings (lower-case names) of the benchmarked server; argon2 left at defaults."""
    return {**LIFTED_LIMITS, **base_settings(database_url, prefix, data_dir, port)}


def create_users(settings: dict[str, str], count: int) -> None:
    """Create ``count`` accounts in-process, hashed with the production parameters."""
    from idp.accounts import AccountService
    from idp.db import make_engine, make_session_factory
    from idp.security.passwords import PasswordService
    from idp.settings import load_settings

    loaded = load_settings(overrides=settings, environ={})
    engine = make_engine(loaded.database_url)
    try:
        with make_session_factory(engine)() as db:
            accounts = AccountService(db, PasswordService(loaded))
            for i in range(count):
                accounts.create_user(
                    user_email(i), user_password(i), first_name="Bench", last_name=f"User {i}"
                )
    finally:
        engine.dispose()


def set_alerts(settings: dict[str, str], on_success: str, on_failure: bool) -> None:
    """Give every account the same login-alert preferences."""
    from sqlalchemy import update

    from idp.db import make_engine
    from idp.models import User
    from idp.settings import load_settings

    engine = make_engine(load_settings(overrides=settings, environ={}).database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(User).values(alert_on_success=on_success, alert_on_failure=on_failure)
            )
    finally:
        engine.dispose()


def argon2_parameters() -> tuple[int, int, int]:
    """(memory KiB, time cost, parallelism) as idp uses them by default."""
    from idp.settings import load_settings

    s = load_settings(environ={})
    return s.argon2_memory_kib, s.argon2_time_cost, s.argon2_parallelism


def default_limits() -> str:
    """The default sign-in rate limits the benchmark lifts, as a sentence for the report."""
    from idp.settings import load_settings

    s = load_settings(environ={})
    per_ip = getattr(s, "login_attempts_per_ip_per_minute", None)
    total = getattr(s, "login_attempts_global_per_minute", None)
    if not isinstance(per_ip, int) or not isinstance(total, int):
        return "rate limits: none configured"
    return (
        f"rate limits lifted for the benchmark; by default they allow {per_ip} sign-in "
        f"attempts per IP and {total} in all per minute ({total / 60:.0f}/s)"
    )


def argon2_worker(
    params: tuple[int, int, int], start_at: float, end_at: float
) -> tuple[int, float]:
    """Verify one hash in a loop between ``start_at`` and ``end_at``.

    Returns how many verifications were done and the CPU seconds they took.
    """
    from argon2 import PasswordHasher, Type

    memory, time_cost, parallelism = params
    hasher = PasswordHasher(
        time_cost=time_cost, memory_cost=memory, parallelism=parallelism, type=Type.ID
    )
    password = user_password(0)
    stored = hasher.hash(password)
    sleep_until(start_at)
    cpu_before = time.process_time()
    done = 0
    while time.monotonic() < end_at:
        hasher.verify(stored, password)
        done += 1
    return done, time.process_time() - cpu_before


@dataclass(frozen=True)
class Argon2Bound:
    """Verifications per second, and the share of the machine's CPU the verifiers got."""

    per_second: float
    share: float  # about 1.0 on a quiet machine


def argon2_bound(params: tuple[int, int, int], processes: int, seconds: float) -> Argon2Bound:
    """Verifications per second with ``processes`` verifying in parallel."""
    start_at = time.monotonic() + 2.0  # leaves time for the processes to start
    end_at = start_at + seconds
    with SPAWN.Pool(processes) as pool:
        pending = pool.starmap_async(argon2_worker, [(params, start_at, end_at)] * processes)
        sleep_until(start_at)
        total_before = machine_cpu()[1]
        sleep_until(end_at)
        total_after = machine_cpu()[1]
        results = pending.get(timeout=seconds + 60)
    share = sum(cpu for _, cpu in results) / max(total_after - total_before, 1e-9)
    return Argon2Bound(sum(count for count, _ in results) / seconds, share)


# Simulated browsers ----------------------------------------------------------------------


class SignInError(Exception):
    """A step of the sign-in did not answer as a browser expects."""


class Browser(Protocol):
    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Send one request with the jar's cookies; return (status, Location, body)."""
        ...

    def forget_session(self) -> None:
        """Drop the session cookie (keep the device cookies)."""
        ...


class HttpClientBrowser:
    """A cookie jar over http.client: one connection per request, as gunicorn's sync workers
    close every connection anyway."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def forget_session(self) -> None:
        self.cookies.pop(SESSION_COOKIE, None)

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            for header in response.headers.get_all("Set-Cookie") or []:
                self._store(header)
            return response.status, response.headers.get("Location", ""), text
        finally:
            conn.close()

    def _store(self, header: str) -> None:
        pair, _, attributes = header.partition(";")
        name, _, value = pair.strip().partition("=")
        if not value or "max-age=0" in attributes.lower().replace(" ", ""):
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value


class RequestsBrowser:
    """The same over requests.Session (heavier on the client's CPU)."""

    def __init__(self, port: int) -> None:
        import requests

        self.base = f"http://{HOST}:{port}"
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "text/html"})

    def forget_session(self) -> None:
        self.session.cookies.pop(SESSION_COOKIE, None)

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        response = self.session.request(
            method, self.base + path, data=form, allow_redirects=False, timeout=30
        )
        return response.status_code, response.headers.get("Location", ""), response.text


def make_browser(kind: str, port: int) -> Browser:
    return RequestsBrowser(port) if kind == "requests" else HttpClientBrowser(port)


def csrf_token(page: str) -> str:
    match = CSRF_FIELD.search(page)
    if match is None:
        raise SignInError("page without a csrf_token field")
    return match.group(1)


def sign_in(browser: Browser, email: str, password: str) -> str:
    """GET /login, POST /login, follow the 303 to /account; raise unless it shows ``email``.

    Returns the account page (its sign-out form carries the CSRF token for :func:`sign_out`).
    """
    status, _, page = browser.request("GET", "/login")
    if status != 200:
        raise SignInError(f"GET /login answered {status}")
    form = {"csrf_token": csrf_token(page), "email": email, "password": password}
    status, location, _ = browser.request("POST", "/login", form)
    if status != 303 or urlsplit(location).path != "/account":
        raise SignInError(f"POST /login answered {status} to {location!r}")
    status, _, page = browser.request("GET", "/account")
    if status != 200 or f'data-testid="email">{email}<' not in page:
        raise SignInError(f"GET /account answered {status} without the user's email")
    return page


def sign_out(browser: Browser, account_page: str) -> None:
    """POST /logout with the account page's token; raise unless it lands on the signed-out form."""
    status, location, _ = browser.request(
        "POST", "/logout", {"csrf_token": csrf_token(account_page)}
    )
    if status != 303 or "signed_out=1" not in location:
        raise SignInError(f"POST /logout answered {status} to {location!r}")


# Load generator --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    """What every simulated browser needs to know (picklable, sent to the client processes)."""

    port: int
    users: int
    clients: int
    threads: int
    client: str
    logout: bool
    start_at: float  # time.monotonic(), which is system-wide on Linux
    end_at: float


@dataclass
class LoadResult:
    """Sign-ins whose account page was reached inside the window, and failures inside it."""

    signed_in: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0

    @staticmethod
    def combine(parts: list[LoadResult]) -> LoadResult:
        total = LoadResult()
        for part in parts:
            total.signed_in += part.signed_in
            total.errors += part.errors
            total.latencies.extend(part.latencies)
            total.error_samples.extend(part.error_samples[: 5 - len(total.error_samples)])
            total.cpu_seconds += part.cpu_seconds
        return total


def browse(plan: LoadPlan, slot: int, result: LoadResult) -> None:
    """One simulated browser: sign in, sign out, next user, until the window closes."""
    browser = make_browser(plan.client, plan.port)
    stride = plan.clients * plan.threads
    turn = slot
    while time.monotonic() < plan.end_at:
        index = turn % plan.users
        turn += stride
        began = time.monotonic()
        try:
            page = sign_in(browser, user_email(index), user_password(index))
            reached = time.monotonic()
            if plan.start_at <= reached <= plan.end_at:
                result.signed_in += 1
                result.latencies.append(reached - began)
            if plan.logout:
                sign_out(browser, page)
            else:
                browser.forget_session()
        except (SignInError, OSError, http.client.HTTPException) as exc:
            if plan.start_at <= time.monotonic() <= plan.end_at:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(f"{type(exc).__name__}: {exc}")
            browser = make_browser(plan.client, plan.port)  # start over with a clean jar
            time.sleep(0.05)  # a failing server is not hammered


def load_process(plan: LoadPlan, process_index: int) -> LoadResult:
    """Run ``plan.threads`` browsers; measure this process's CPU time inside the window."""
    results = [LoadResult() for _ in range(plan.threads)]
    threads = [
        threading.Thread(
            target=browse, args=(plan, process_index * plan.threads + t, results[t]), daemon=True
        )
        for t in range(plan.threads)
    ]
    for thread in threads:
        thread.start()
    sleep_until(plan.start_at)
    cpu_before = time.process_time()
    sleep_until(plan.end_at)
    cpu_used = time.process_time() - cpu_before
    for thread in threads:
        thread.join(timeout=150)  # a stuck request times out after 30 s per step
    total = LoadResult.combine(results)
    total.cpu_seconds = cpu_used
    return total


def run_load(
    opts: Options, port: int, server_pid: int, database: str
) -> tuple[LoadResult, CpuUsage]:
    """Drive the server for the warm-up and the window; return the window's figures."""
    start_at = time.monotonic() + 1.5 + opts.warmup  # 1.5 s for the processes to start
    plan = LoadPlan(
        port=port,
        users=opts.users,
        clients=opts.clients,
        threads=opts.threads,
        client=opts.client,
        logout=opts.logout,
        start_at=start_at,
        end_at=start_at + opts.duration,
    )
    with SPAWN.Pool(opts.clients) as pool:
        pending = pool.starmap_async(load_process, [(plan, i) for i in range(opts.clients)])
        sleep_until(plan.start_at)
        before = cpu_snapshot(server_pid, database)
        sleep_until(plan.end_at)
        after = cpu_snapshot(server_pid, database)
        parts = pending.get(timeout=200)
    return LoadResult.combine(parts), after - before


# Report ----------------------------------------------------------------------------------


def print_argon2(opts: Options, bound: Argon2Bound) -> None:
    cores = os.cpu_count() or 1
    print(
        f"argon2id verifications/s ({cores} processes, {opts.argon2_duration:g} s): "
        f"{bound.per_second:.1f}  ({1000 * cores / bound.per_second:.1f} ms per verification "
        f"per core; the verifiers got {100 * bound.share:.0f}% of the machine)"
    )


def print_sign_ins(opts: Options, load: LoadResult) -> None:
    latencies = load.latencies or [0.0]
    print(
        f"sign-ins/s ({opts.duration:g} s window): {load.signed_in / opts.duration:.1f}  "
        f"({load.signed_in} sign-ins reached the account page)"
    )
    print(
        f"sign-in latency (GET /login .. account page): "
        f"p50 {1000 * percentile(latencies, 50):.0f} ms, "
        f"p99 {1000 * percentile(latencies, 99):.0f} ms, "
        f"mean {1000 * statistics.fmean(latencies):.0f} ms"
    )
    print(f"errors: {load.errors}")
    for sample in load.error_samples:
        print(f"  e.g. {sample}")


def print_cpu(load: LoadResult, cpu: CpuUsage) -> float:
    """Print where the window's CPU went, per sign-in; return the unexplained share."""
    n, unit = (load.signed_in, "core-ms per sign-in") if load.signed_in else (1, "core-ms")
    rest = cpu.rest(load.cpu_seconds)
    parts = [
        ("server (gunicorn)", cpu.server),
        ("client (load generator)", load.cpu_seconds),
        ("PostgreSQL", cpu.postgres),
        ("Redis", cpu.redis),
        ("rest (kernel, other programs)", rest),
    ]
    print(
        f"CPU in the window ({unit}), machine "
        f"{100 * cpu.machine_busy / cpu.machine_total:.0f}% busy of {os.cpu_count()} cores:"
    )
    print("  " + ", ".join(f"{name} {1000 * seconds / n:.1f}" for name, seconds in parts))
    return rest / cpu.machine_total


def report(opts: Options, bound: Argon2Bound, load: LoadResult, cpu: CpuUsage) -> None:
    """Print the figures, and a warning when other programs disturbed the measurements."""
    print_argon2(opts, bound)
    print_sign_ins(opts, load)
    ratio = load.signed_in / opts.duration / bound.per_second
    print(f"ratio sign-ins / argon2id verifications: {ratio:.2f}  (target >= 0.80)")
    foreign = print_cpu(load, cpu)
    if foreign > 0.05 or bound.share < 0.95:
        print(
            f"warning: the machine was not quiet (the argon2id verifiers got "
            f"{100 * bound.share:.0f}% of it, other programs used {100 * foreign:.0f}% of the "
            "sign-in window); run again when nothing else runs"
        )


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    memory, time_cost, parallelism = argon2_parameters()
    print(
        f"idp sign-in benchmark: {os.cpu_count()} cores, gunicorn --workers {opts.workers} "
        f"(sync), {opts.users} users, load {opts.clients} processes x {opts.threads} "
        f"browsers ({opts.client}), argon2id m={memory} KiB t={time_cost} p={parallelism}",
        flush=True,
    )
    print(default_limits(), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="idp-bench-") as tmp,
        postgres_database() as database_url,
        redis_prefix() as prefix,
    ):
        port = free_port()
        settings = server_settings(database_url, prefix, Path(tmp) / "var", port)
        if opts.compare_alerts:
            opts = dataclasses.replace(opts, users=max(opts.users, 1000))
        create_users(settings, opts.users)
        bound = argon2_bound(
            (memory, time_cost, parallelism), os.cpu_count() or 1, opts.argon2_duration
        )
        log = Path(tmp) / "gunicorn.log"
        database = database_url.rpartition("/")[2]
        if opts.compare_alerts:
            set_alerts(settings, "never", False)
        with gunicorn(settings, port, opts.workers, log) as server_pid:
            load, cpu = run_load(opts, port, server_pid, database)
        report(opts, bound, load, cpu)
        if opts.compare_alerts:
            set_alerts(settings, "always", True)
            with gunicorn(settings, port, opts.workers, log) as server_pid:
                alerted, alerted_cpu = run_load(opts, port, server_pid, database)
            print("\nwith a login alert queued for every sign-in:", flush=True)
            report(opts, bound, alerted, alerted_cpu)
            without = load.signed_in / opts.duration
            with_alerts = alerted.signed_in / opts.duration
            print(
                f"\nalerts on/off: {with_alerts:.1f} / {without:.1f} sign-ins/s = "
                f"{with_alerts / without:.2f}  (target >= 0.95)",
                flush=True,
            )
            load.errors += alerted.errors
        if load.errors:
            print("gunicorn log (last lines):\n" + log_tail(log))
    return 0 if load.signed_in and not load.errors else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError) as error:  # e.g. gunicorn did not start, service down
        print(f"bench: {error}", file=sys.stderr)
        sys.exit(2)
