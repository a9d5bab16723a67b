"""Client-credentials grants, introspections and userinfo calls per second, next to /healthz.

Issue 3's performance requirement: each endpoint's rate and p50/p99 latency at 16 concurrent
connections, as a ratio to the same server's bare /healthz rate measured in the same run
(targets: introspection >= 0.5, userinfo >= 0.5, client-credentials >= 0.25; p99 < 50 ms), and
the client-credentials rate per core next to Keycloak's published 120 grants/s per vCPU.

Setup: its own PostgreSQL database (dropped at the end), its own Redis key prefix (deleted at
the end), a confidential client and one user created in-process, one user access token minted
in-process by the real TokenService, then ``gunicorn 'idp:create_app()'`` on a free loopback
port; the introspected token is a client-credentials token fetched from that server. Load:
``wrk -c 16 -t 2 -d <duration> --latency`` per endpoint, one after the other, /healthz first
and the grants last (they write thousands of rows, after which PostgreSQL's background work,
autovacuum among it, would run during the next endpoint's window), with a small Lua script
that also checks every answer (status 2xx and the expected body); all that ``--rounds`` times
(the database vacuumed and checkpointed between rounds), and each ratio is the median of the
rounds' ratios, every round's endpoint against that round's /healthz. Only 127.0.0.1 is ever
contacted. Needs wrk (Debian: ``apt-get install wrk``); see bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from common import (
    HOST,
    CpuUsage,
    base_settings,
    cpu_snapshot,
    free_port,
    gunicorn,
    log_tail,
    postgres_database,
    redis_prefix,
)

CLIENT_SCOPES = "openid profile email offline_access"
USER_SCOPE = "openid profile email"
USER_EMAIL = "bench-provider@example.com"
KEYCLOAK_PER_VCPU = 120.0  # client-credentials grants/s per vCPU, Keycloak's published sizing
P99_TARGET_MS = 50.0


# Configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Command-line options."""

    duration: float
    warmup: float
    rounds: int
    connections: int
    wrk_threads: int
    workers: int
    worker_class: str
    threads: int
    access_token_alg: str


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help="seconds of load per endpoint and round (default 5)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of unmeasured load before each window (default 2, 0 for none)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of every endpoint, /healthz first in each (default 3); a ratio is the "
        "median of the rounds' ratios",
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--worker-class",
        choices=("sync", "gthread"),
        default="sync",
        help="gunicorn worker class (default sync, which closes every connection; gthread "
        "keeps connections alive)",
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per gthread worker (default 4)"
    )
    parser.add_argument(
        "--access-token-alg",
        choices=("RS256", "ES256"),
        default="RS256",
        help="IDP_ACCESS_TOKEN_ALG of the server: what access tokens are signed with "
        "(default RS256, idp's default)",
    )
    ns = parser.parse_args(argv)
    opts = Options(**vars(ns))
    if opts.duration < 1 or opts.warmup < 0 or opts.duration + opts.warmup > 600:
        parser.error("--duration must be 1 to 600 s and --warmup 0 or more (600 s together)")
    if min(opts.connections, opts.wrk_threads, opts.workers, opts.threads, opts.rounds) < 1:
        parser.error(
            "--connections, --wrk-threads, --workers, --threads and --rounds must be at least 1"
        )
    if opts.wrk_threads > opts.connections:
        parser.error("--wrk-threads must not exceed --connections")
    return opts


# Setup -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str
    user_access_token: str

    @property
    def basic(self) -> str:
        """RFC 6749 §2.3.1 client_secret_basic (id and secret need no form-encoding here)."""
        pair = f"{self.client_id}:{self.client_secret}".encode()
        return "Basic " + base64.b64encode(pair).decode()


def provision(settings: dict[str, str]) -> Credentials:
    """In-process: the signing keys, a confidential client, one user and a user access token
    issued by the real TokenService (as the code flow would, without a browser session)."""
    from idp.accounts import AccountService
    from idp.db import make_engine, make_session_factory
    from idp.provider.clients import ClientService
    from idp.provider.keys import KeyService
    from idp.provider.tokens import Principal, TokenService
    from idp.security.passwords import PasswordService
    from idp.settings import load_settings

    loaded = load_settings(overrides=settings, environ={})
    engine = make_engine(loaded.database_url)
    try:
        with make_session_factory(engine)() as db:
            keys = KeyService.from_settings(db, loaded)
            keys.ensure_keys()
            created = ClientService(db).create(
                "Bench relying party", ["https://rp.example/cb"], scopes=CLIENT_SCOPES
            )
            assert created.secret is not None
            user = AccountService(db, PasswordService(loaded)).create_user(
                USER_EMAIL, "bench provider passphrase tulip", first_name="Bench", last_name="User"
            )
            issued = TokenService(db, keys, loaded).issue(
                created.client.client_id,
                Principal(user=user, session_id=None, auth_time=int(time.time())),
                USER_SCOPE,
                grant_type="authorization_code",
                include_refresh_token=False,
            )
            db.commit()
            return Credentials(created.client.client_id, created.secret, issued["access_token"])
    finally:
        engine.dispose()


# Endpoints under load --------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One request wrk repeats, and what every answer must contain to count as valid."""

    name: str
    method: str
    path: str
    headers: dict[str, str]
    body: str
    expect: str  # a substring of every valid (2xx) answer's body
    target: float | None  # minimum ratio to /healthz


def endpoints(creds: Credentials, introspected: str) -> list[Endpoint]:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    basic = {**form, "Authorization": creds.basic}
    return [
        Endpoint("healthz", "GET", "/healthz", {}, "", '"status":"ok"', None),
        Endpoint(
            "introspection",
            "POST",
            "/introspect",
            basic,
            urlencode({"token": introspected}),
            '"active":true',
            0.5,
        ),
        Endpoint(
            "userinfo",
            "GET",
            "/userinfo",
            {"Authorization": f"Bearer {creds.user_access_token}"},
            "",
            json.dumps(USER_EMAIL),
            0.5,
        ),
        Endpoint(
            "client-credentials",
            "POST",
            "/token",
            basic,
            urlencode({"grant_type": "client_credentials"}),
            '"access_token":',
            0.25,
        ),
    ]


def call(port: int, endpoint: Endpoint) -> tuple[int, str]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(
            endpoint.method, endpoint.path, body=endpoint.body or None, headers=endpoint.headers
        )
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def client_credentials_token(port: int, creds: Credentials) -> str:
    """A client-credentials access token from the running server (the introspected token)."""
    grant = next(e for e in endpoints(creds, "") if e.name == "client-credentials")
    status, body = call(port, grant)
    if status != 200:
        raise RuntimeError(f"POST /token answered {status}: {body[:300]}")
    token: str = json.loads(body)["access_token"]
    return token


def check_once(port: int, endpoint: Endpoint) -> None:
    """One request before the load: the endpoint must answer as wrk will expect it to."""
    status, body = call(port, endpoint)
    if not 200 <= status < 300 or endpoint.expect not in body:
        raise RuntimeError(
            f"{endpoint.method} {endpoint.path} answered {status} without {endpoint.expect!r}: "
            f"{body[:300]}"
        )


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII text is a valid Lua string literal


# Every thread counts answers that are not 2xx or lack the expected text; done() adds them up.
WRK_SCRIPT = """
wrk.method = {method}
wrk.path = {path}
wrk.body = {body}
{headers}
local expect = {expect}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
  sample = ""
end

function response(status, headers, body)
  if status < 200 or status > 299 or not string.find(body or "", expect, 1, true) then
    bad = bad + 1
    if sample == "" then
      sample = status .. " " .. string.sub(body or "", 1, 200)
    end
  end
end

function done(summary, latency, requests)
  local total, first = 0, ""
  for _, thread in ipairs(threads) do
    total = total + thread:get("bad")
    if first == "" then first = thread:get("sample") end
  end
  io.write(string.format("bench-invalid %d\\n", total))
  if first ~= "" then
    io.write("bench-sample " .. string.gsub(first, "[\\r\\n]", " ") .. "\\n")
  end
end
"""


def wrk_script(endpoint: Endpoint) -> str:
    headers = "\n".join(
        f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in endpoint.headers.items()
    )
    return WRK_SCRIPT.format(
        method=lua_string(endpoint.method),
        path=lua_string(endpoint.path),
        body=lua_string(endpoint.body) if endpoint.body else "nil",
        headers=headers,
        expect=lua_string(endpoint.expect),
    )


@dataclass(frozen=True)
class WrkResult:
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int  # wrk's "Non-2xx or 3xx responses"
    socket_errors: int  # connect, read, write, timeout
    invalid: int  # our Lua check: not 2xx, or without the expected text
    sample: str
    wrk_cpu: float  # CPU seconds wrk used

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors + self.invalid


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _latency_ms(output: str, percent: int) -> float:
    match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no {percent}% latency:\n{output}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str, wrk_cpu: float) -> WrkResult:
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    invalid = re.search(r"^bench-invalid (\d+)", output, re.MULTILINE)
    if rate is None or total is None or invalid is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    sample = re.search(r"^bench-sample (.*)$", output, re.MULTILINE)
    return WrkResult(
        requests=int(total.group(1)),
        per_second=float(rate.group(1)),
        p50_ms=_latency_ms(output, 50),
        p99_ms=_latency_ms(output, 99),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sockets.groups()) if sockets else 0,
        invalid=int(invalid.group(1)),
        sample=sample.group(1) if sample else "",
        wrk_cpu=wrk_cpu,
    )


def run_wrk(opts: Options, port: int, script: Path, seconds: float) -> WrkResult:
    args = [
        "wrk",
        "-c",
        str(opts.connections),
        "-t",
        str(opts.wrk_threads),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        f"http://{HOST}:{port}",
    ]
    before = os.times()
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    after = os.times()
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return parse_wrk(done.stdout, cpu)


@dataclass(frozen=True)
class Measured:
    """One endpoint's window in one round."""

    endpoint: Endpoint
    wrk: WrkResult
    cpu: CpuUsage


def measure(
    opts: Options, port: int, server_pid: int, database: str, endpoint: Endpoint, tmp: Path
) -> Measured:
    script = tmp / f"{endpoint.name}.lua"
    script.write_text(wrk_script(endpoint))
    check_once(port, endpoint)
    if opts.warmup > 0:
        run_wrk(opts, port, script, opts.warmup)
    before = cpu_snapshot(server_pid, database)
    result = run_wrk(opts, port, script, opts.duration)
    after = cpu_snapshot(server_pid, database)
    return Measured(endpoint, result, after - before)


@dataclass(frozen=True)
class Summary:
    """One endpoint over every round. Its ratio to /healthz is the median of the rounds'
    ratios, each taken against the /healthz window of the same round, so a machine whose speed
    drifts during the run moves both sides of a ratio alike."""

    endpoint: Endpoint
    rounds: list[Measured]
    ratios: list[float]  # per round: this endpoint's req/s / that round's /healthz req/s

    @property
    def requests(self) -> int:
        return sum(m.wrk.requests for m in self.rounds)

    @property
    def per_second(self) -> float:
        seconds = sum(m.wrk.requests / m.wrk.per_second for m in self.rounds if m.wrk.per_second)
        return self.requests / seconds if seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(m.wrk.p50_ms for m in self.rounds)

    @property
    def p99_ms(self) -> float:
        return max(m.wrk.p99_ms for m in self.rounds)  # the worst round's

    @property
    def errors(self) -> int:
        return sum(m.wrk.errors for m in self.rounds)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def cpu(self) -> CpuUsage:
        return sum((m.cpu for m in self.rounds[1:]), self.rounds[0].cpu)

    @property
    def wrk_cpu(self) -> float:
        return sum(m.wrk.wrk_cpu for m in self.rounds)


def ratio_to_healthz(window: Measured, healthz: Measured) -> float:
    return window.wrk.per_second / healthz.wrk.per_second if healthz.wrk.per_second else 0.0


def summarize(rounds: list[list[Measured]]) -> list[Summary]:
    """Per endpoint (in the order measured), its windows of every round."""
    summaries = []
    for i, first in enumerate(rounds[0]):
        windows = [r[i] for r in rounds]
        ratios = [ratio_to_healthz(w, r[0]) for w, r in zip(windows, rounds, strict=True)]
        summaries.append(Summary(first.endpoint, windows, ratios))
    return summaries


def settle(database_url: str) -> None:
    """Between rounds, outside every window: vacuum and analyze the benchmark's database and
    flush its dirty pages, so that the background work the last round's grants left (autovacuum
    of thousands of new rows, their writes to disk) does not run during the next round's windows
    (it would slow /healthz, the first of them, and flatter every ratio)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")


# Report ----------------------------------------------------------------------------------


def print_table(summaries: list[Summary]) -> None:
    header = (
        f"{'endpoint':<19} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7} "
        f"{'ratio':>6} {'target':>7}  {'rounds':<16} verdict"
    )
    print(header)
    print("-" * len(header))
    for s in summaries:
        e = s.endpoint
        misses = []
        if s.errors:
            misses.append("INVALID (errors)")
        if e.target is not None and s.ratio < e.target:
            misses.append("ratio below target")
        if s.p99_ms >= P99_TARGET_MS:
            misses.append(f"p99 >= {P99_TARGET_MS:g} ms")
        target = f">={e.target:g}" if e.target is not None else "-"
        spread = " ".join(f"{r:.2f}" for r in s.ratios)
        print(
            f"{e.name:<19} {s.per_second:>8.1f} {s.p50_ms:>7.2f} {s.p99_ms:>7.2f} "
            f"{s.errors:>7} {s.ratio:>6.2f} {target:>7}  {spread:<16} {'; '.join(misses) or 'ok'}"
        )


def print_errors(summaries: list[Summary]) -> None:
    for s in summaries:
        for m in s.rounds:
            w = m.wrk
            if w.errors:
                print(
                    f"errors at {s.endpoint.name}: {w.non_2xx} non-2xx/3xx, {w.socket_errors} "
                    f"socket errors, {w.invalid} answers not 2xx or without "
                    f"{s.endpoint.expect!r}" + (f"; e.g. {w.sample}" if w.sample else "")
                )


def print_cpu(summaries: list[Summary]) -> float:
    """Core-ms per request by consumer; return the largest share of a window other programs
    used."""
    cores = os.cpu_count() or 1
    print(f"CPU per request (core-ms) and machine busy, {cores} cores, all rounds:")
    foreign = 0.0
    for s in summaries:
        for m in s.rounds:
            foreign = max(foreign, m.cpu.rest(m.wrk.wrk_cpu) / max(m.cpu.machine_total, 1e-9))
        n = max(s.requests, 1)
        c = s.cpu
        rest = c.rest(s.wrk_cpu)
        print(
            f"  {s.endpoint.name:<19} server {1000 * c.server / n:.2f}, "
            f"PostgreSQL {1000 * c.postgres / n:.2f}, Redis {1000 * c.redis / n:.2f}, "
            f"wrk {1000 * s.wrk_cpu / n:.2f}, rest {1000 * rest / n:.2f}; "
            f"machine {100 * c.machine_busy / max(c.machine_total, 1e-9):.0f}% busy"
        )
    return foreign


def print_keycloak(grants: Summary) -> None:
    cores = os.cpu_count() or 1
    per_core = grants.per_second / cores
    verdict = "beats" if per_core > KEYCLOAK_PER_VCPU else "does NOT beat"
    print(
        f"client-credentials per core: {grants.per_second:.1f}/s / {cores} cores = "
        f"{per_core:.1f}/s per core, {per_core / KEYCLOAK_PER_VCPU:.2f} x Keycloak's "
        f"{KEYCLOAK_PER_VCPU:g}/s per vCPU ({verdict} it; server, database, Redis and wrk "
        "share the cores)"
    )
    cpu = grants.cpu
    if cpu.server > 0:
        print(
            f"  per core-second of gunicorn CPU alone: {grants.requests / cpu.server:.1f} "
            f"grants; with PostgreSQL and Redis: "
            f"{grants.requests / (cpu.server + cpu.postgres + cpu.redis):.1f}"
        )


def report(summaries: list[Summary]) -> None:
    print()
    print_table(summaries)
    print(
        f"(req/s over all rounds; p50 the rounds' median, p99 the worst round's; ratio = the "
        f"median over the rounds of req/s / that round's /healthz req/s, each round's listed; "
        f"every p99 must be < {P99_TARGET_MS:g} ms; errors = non-2xx/3xx + socket errors + "
        "answers failing the check)"
    )
    print_errors(summaries)
    print_keycloak(next(s for s in summaries if s.endpoint.name == "client-credentials"))
    foreign = print_cpu(summaries)
    if foreign > 0.05:
        print(
            f"warning: the machine was not quiet (other programs used up to {100 * foreign:.0f}% "
            "of a window); run again when nothing else runs"
        )


# Main ------------------------------------------------------------------------------------


def server_args(opts: Options) -> list[str]:
    if opts.worker_class == "gthread":
        return ["--worker-class", "gthread", "--threads", str(opts.threads)]
    return []


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk not found (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    workers = f"--workers {opts.workers} ({opts.worker_class}"
    workers += f", {opts.threads} threads)" if opts.worker_class == "gthread" else ")"
    print(
        f"idp provider benchmark: {os.cpu_count()} cores, gunicorn {workers}, "
        f"wrk -c {opts.connections} -t {opts.wrk_threads} -d {opts.duration:g}s "
        f"(+{opts.warmup:g} s warm-up) per endpoint x {opts.rounds} rounds, "
        "PostgreSQL + Redis on loopback, "
        f"access tokens {opts.access_token_alg}",
        flush=True,
    )
    rounds: list[list[Measured]] = []
    with (
        tempfile.TemporaryDirectory(prefix="idp-bench-") as tmp_name,
        postgres_database() as database_url,
        redis_prefix() as prefix,
    ):
        tmp = Path(tmp_name)
        port = free_port()
        settings = base_settings(database_url, prefix, tmp / "var", port)
        # Every token used by the load stays valid for the whole run.
        run_minutes = 4 * opts.rounds * (opts.duration + opts.warmup) / 60
        settings["access_token_minutes"] = str(int(run_minutes) + 60)
        settings["access_token_alg"] = opts.access_token_alg
        creds = provision(settings)
        log = tmp / "gunicorn.log"
        database = database_url.rpartition("/")[2]
        with gunicorn(settings, port, opts.workers, log, server_args(opts)) as server_pid:
            introspected = client_credentials_token(port, creds)
            for number in range(1, opts.rounds + 1):
                if number > 1:
                    settle(database_url)
                measured: list[Measured] = []
                for endpoint in endpoints(creds, introspected):
                    m = measure(opts, port, server_pid, database, endpoint, tmp)
                    measured.append(m)
                    print(
                        f"  round {number}, {endpoint.name}: {m.wrk.per_second:.1f} req/s "
                        f"({ratio_to_healthz(m, measured[0]):.2f} of /healthz), "
                        f"p50 {m.wrk.p50_ms:.2f} ms, p99 {m.wrk.p99_ms:.2f} ms, "
                        f"{m.wrk.errors} errors",
                        flush=True,
                    )
                rounds.append(measured)
        summaries = summarize(rounds)
        report(summaries)
        if any(s.errors for s in summaries):
            print("gunicorn log (last lines):\n" + log_tail(log))
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        print(f"bench: {error}", file=sys.stderr)
        sys.exit(2)
