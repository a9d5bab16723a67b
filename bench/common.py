"""What the benchmarks share: their own PostgreSQL database and Redis prefix, gunicorn on a free
loopback port, and CPU accounting from /proc. See bench/README.md.

The scripts import it as ``common`` (``python bench/<script>.py`` puts bench/ on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
POSTGRES_ADMIN_URL = os.environ.get(
    "IDP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("IDP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


# Backing services ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database ``idp_bench_<random>`` with the idp schema; dropped afterwards."""
    import psycopg

    from idp.migrate import upgrade

    name = f"idp_bench_{secrets.token_hex(5)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    try:
        url = f"{base}/{name}"
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of its own; every key under it is deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    client.ping()
    prefix = f"idpbench:{secrets.token_hex(5)}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()


def base_settings(database_url: str, prefix: str, data_dir: Path, port: int) -> dict[str, str]:
    """idp settings (lower-case names) of the benchmarked server; argon2 left at defaults."""
    return {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "redis_prefix": prefix,
        "secret_key": secrets.token_urlsafe(48),
        "data_dir": str(data_dir),
        "issuer": f"http://{HOST}:{port}",
        "log_level": "WARNING",
    }


# gunicorn --------------------------------------------------------------------------------


def wait_until_up(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection(HOST, port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer on port {port} within {timeout}s")


@contextlib.contextmanager
def gunicorn(
    settings: dict[str, str],
    port: int,
    workers: int,
    log: Path,
    extra_args: Sequence[str] = (),
) -> Iterator[int]:
    """Run ``gunicorn 'idp:create_app()'`` (plus ``extra_args``); yield the master's pid; stop
    it afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update({f"IDP_{k.upper()}": v for k, v in settings.items()})
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "idp:create_app()",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--control-socket",
        str(log.with_suffix(".ctl")),
        *extra_args,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            try:
                wait_until_up(port, proc)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}; gunicorn log:\n{log_tail(log)}") from None
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# CPU accounting (Linux /proc) ------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds (user + system) by consumer; differences of two samples give a window."""

    server: float  # gunicorn master and workers
    postgres: float  # backends of the benchmark database, and PostgreSQL's own processes
    redis: float  # redis-server (shared, but idle apart from this benchmark)
    machine_busy: float
    machine_total: float

    def __sub__(self, earlier: CpuUsage) -> CpuUsage:
        return CpuUsage(
            *(getattr(self, f) - getattr(earlier, f) for f in self.__dataclass_fields__)
        )

    def __add__(self, other: CpuUsage) -> CpuUsage:
        return CpuUsage(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))

    def rest(self, load_generator: float) -> float:
        """Busy CPU seconds that neither the server, PostgreSQL, Redis nor the load generator
        (``load_generator`` seconds) used: the kernel and other programs."""
        known = self.server + self.postgres + self.redis + load_generator
        return max(self.machine_busy - known, 0.0)


def _process_role(pid: int, ppid: int, comm: str, server_pid: int, database: str) -> str | None:
    """Which benchmarked service a process belongs to, if any."""
    if server_pid in (pid, ppid):
        return "server"
    if comm == "redis-server":
        return "redis"
    if comm == "postgres":
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        # a backend names its database and client; background processes name neither
        if f" {database} " in cmdline or "(" not in cmdline:
            return "postgres"
    return None


def cpu_snapshot(server_pid: int, database: str) -> CpuUsage:
    """Cumulative CPU seconds of the server, PostgreSQL, Redis and the whole machine."""
    used = {"server": 0.0, "postgres": 0.0, "redis": 0.0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            head, _, tail = stat.rpartition(")")
            fields = tail.split()
            role = _process_role(
                int(entry), int(fields[1]), head.partition("(")[2], server_pid, database
            )
        except OSError:  # the process ended meanwhile
            continue
        if role is not None:
            used[role] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    busy, total = machine_cpu()
    return CpuUsage(**used, machine_busy=busy, machine_total=total)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # guest time is already inside user time
    idle = values[3] + values[4]
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def percentile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (nearest rank); 0 when there are no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-q * len(ordered) // 100))
    return ordered[rank - 1]


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
