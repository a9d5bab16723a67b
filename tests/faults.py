"""Backing services of a test's own, which the fault tests may stop, restart and flush without
touching the machine's shared PostgreSQL and Redis: a redis-server and a PostgreSQL cluster
(initdb as the ``postgres`` user) on free loopback ports, removed at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests import services

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), Path("/"))


def _wait(check: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout}s")


@dataclass
class PrivateRedis:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    replica_of: int | None = None

    def start(self) -> None:
        import redis

        extra = ["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        _wait(client.ping, "redis-server")
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        client.flushall()
        client.close()


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    if not Path(REDIS_SERVER).exists():
        services.unavailable("redis-server", f"{REDIS_SERVER} not found")
    workdir = Path(tempfile.mkdtemp(prefix="idp-redis-"))
    server = PrivateRedis(services.free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class SentinelGroup:
    """A master, one replica and one sentinel watching them (service ``idp``)."""

    master: PrivateRedis
    replica: PrivateRedis
    sentinel_port: int
    sentinel: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/idp/0"

    def current_master_port(self) -> int:
        import redis

        client = redis.Redis(port=self.sentinel_port, socket_timeout=2)
        host_port = client.execute_command("SENTINEL", "get-master-addr-by-name", "idp")
        client.close()
        return int(host_port[1])


@contextmanager
def redis_with_sentinel() -> Iterator[SentinelGroup]:
    """Replication and a sentinel that fails over one second after the master goes away."""
    import redis

    if not Path(REDIS_SERVER).exists():
        services.unavailable("redis-server", f"{REDIS_SERVER} not found")
    workdir = Path(tempfile.mkdtemp(prefix="idp-sentinel-"))
    master = PrivateRedis(services.free_port(), workdir / "master")
    replica = PrivateRedis(services.free_port(), workdir / "replica", replica_of=master.port)
    for server in (master, replica):
        server.workdir.mkdir()
        server.start()
    replica_client = redis.Redis(port=replica.port)
    _wait(lambda: replica_client.info("replication").get("master_link_status") == "up",
          "replication")
    replica_client.close()
    port = services.free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor idp 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds idp 1000\n"
        "sentinel failover-timeout idp 5000\n"
    )
    sentinel = subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    group = SentinelGroup(master, replica, port, sentinel)
    try:
        watcher = redis.Redis(port=port, socket_timeout=2)
        _wait(lambda: watcher.execute_command("SENTINEL", "replicas", "idp"), "sentinel")
        watcher.close()
        yield group
    finally:
        sentinel.kill()
        sentinel.wait(timeout=10)
        master.stop()
        replica.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class PrivatePostgres:
    port: int
    datadir: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/idp"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.datadir),
             "-l", str(self.datadir / "server.log"), "-w", "-t", "30", *args],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self._ctl("-o", f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 "
                        "-c fsync=off -c full_page_writes=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh PostgreSQL cluster with a database ``idp``, trust auth on loopback."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        services.unavailable("PostgreSQL server binaries", f"{PG_BIN}/initdb or runuser missing")
    root = Path(tempfile.mkdtemp(prefix="idp-pg-"))
    os.chmod(root, 0o755)
    datadir = root / "data"
    datadir.mkdir()
    shutil.chown(datadir, "postgres", "postgres")
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(datadir), "-A",
         "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = PrivatePostgres(services.free_port(), datadir)
    server.start()
    try:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE idp")
        yield server
    finally:
        with suppress(subprocess.CalledProcessError):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
