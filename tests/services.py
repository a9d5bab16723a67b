"""Real backing services for the tests: PostgreSQL, Redis, free ports, subprocess servers.

Each test run makes its own PostgreSQL database and Redis key prefix, so parallel runs and
leftovers never collide. Under CI=true a missing service fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from idp.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
RUN_ID = uuid.uuid4().hex[:10]
POSTGRES_ADMIN_URL = os.environ.get(
    "IDP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


# The secret key of the servers a test's ``idp`` commands act for (the operator's shell has it).
COMMAND_SECRET_KEY = "the-servers-secret-key-0123456789-abcdefghijklmnop"


def unavailable(service: str, detail: str) -> None:
    """Fail under CI (the service must be there), skip on a developer machine without it."""
    message = f"{service} is not available: {detail}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def postgres_url(database: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def create_postgres_database(name: str) -> str:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL", str(exc).splitlines()[0])
    return postgres_url(name)


def drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        unavailable("Redis", str(exc))


def idp_env(**settings: str) -> dict[str, str]:
    """The environment for an idp subprocess: the machine's, minus any IDP_*, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update({f"IDP_{k.upper()}": v for k, v in settings.items()})
    return env


def runtime_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    """The environment of an ``idp`` command run next to a test's server: its database, store
    and secret key, and a data dir of its own (as an operator's shell elsewhere would have)."""
    return idp_env(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        redis_prefix=settings.redis_prefix,
        data_dir=str(data_dir),
        secret_key=settings.secret_key,
    )


def run_idp(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idp", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not answer within {timeout}s")


@contextmanager
def running_server(
    args: list[str], env: dict[str, str], port: int, log_path: Path
) -> Iterator[str]:
    """Start a server process, wait for /healthz, yield its base URL, stop it."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base + "/healthz", proc)
            yield base
        finally:
            stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it does not end within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def gunicorn_args(port: int, workers: int = 2) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "idp:create_app()",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--control-socket",
        f"/tmp/idp-gunicorn-{RUN_ID}-{port}.ctl",
    ]
