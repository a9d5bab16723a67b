"""Several idp nodes behind Debian's nginx, as operators run it (issue 9): one PostgreSQL
database, one Redis prefix, N gunicorn servers on free loopback ports, and an nginx of the
test's own (own configuration, pid file and temp folders; never the system one) balancing
round-robin in front of them. The issuer is nginx's address; the nodes trust one proxy hop.

Used by the multi-node and fault tests and by ``bench/soak.py``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from idp.runtime import Runtime
from idp.settings import load_settings
from tests import services
from tests.helpers import PASSWORD

NGINX = Path("/usr/sbin/nginx")

NGINX_CONF = """
user root;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream idp {{
{servers}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://idp;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Request-ID $request_id;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 2s;
    }}
  }}
}}
"""


def check_nginx() -> None:
    if not NGINX.exists():
        services.unavailable("nginx", f"{NGINX} does not exist (apt-get install nginx-light)")


@dataclass
class NodeProcess:
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_served(self) -> int:
        """How many requests this node answered (its idp.access log lines)."""
        return self.log.read_text(errors="replace").count(" idp.access ")


@dataclass
class Cluster:
    base: str  # nginx, the issuer
    nodes: list[NodeProcess]
    env: dict[str, str]
    runtime: Runtime  # in-process access to the same database and store (setup, checks)
    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)

    def start_node(self, node: NodeProcess, workers: int = 1) -> None:
        args = [*services.gunicorn_args(node.port, workers=workers), "--forwarded-allow-ips", "*"]
        log = node.log.open("ab")
        node.process = subprocess.Popen(
            args, env=self.env, cwd=services.ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        services.wait_until_up(node.url + "/healthz", node.process)

    def kill_node(self, node: NodeProcess, sig: int = signal.SIGKILL) -> None:
        """``kill -9`` the node's whole process group (master and workers)."""
        if node.process is not None and node.process.poll() is None:
            os.killpg(node.process.pid, sig)
            node.process.wait(timeout=15)

    def stop(self, node: NodeProcess) -> None:
        self.kill_node(node, signal.SIGTERM)

    def idp(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return services.run_idp(*args, env=self.env, stdin=stdin)


def _nginx_conf(workdir: Path, port: int, upstreams: list[int]) -> Path:
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    servers = "\n".join(
        f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstreams
    )
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=port, servers=servers))
    return conf


@contextmanager
def running_cluster(
    workdir: Path,
    nodes: int = 3,
    workers: int = 1,
    users: tuple[str, ...] = ("alice@example.com",),
    redis_url: str | None = None,
    database_url: str | None = None,
    **extra: str,
) -> Iterator[Cluster]:
    """``nodes`` idp servers behind nginx on one fresh PostgreSQL database (or
    ``database_url``) and one Redis prefix; ``users`` exist with :data:`PASSWORD`."""
    check_nginx()
    services.check_redis()
    name = f"idp_cluster_{services.RUN_ID}_{secrets.token_hex(3)}"
    url = database_url or services.create_postgres_database(name)
    ports = [services.free_port() for _ in range(nodes)]
    workdir.mkdir(parents=True, exist_ok=True)
    nginx_port_dir = workdir / "nginx"
    settings = {
        "database_url": url,
        "redis_url": redis_url or services.REDIS_URL,
        "redis_prefix": f"idptest:{services.RUN_ID}:cluster-{secrets.token_hex(3)}:",
        "secret_key": secrets.token_urlsafe(48),
        "data_dir": str(workdir / "var"),
        "argon2_memory_kib": "1024",
        "argon2_time_cost": "1",
        "proxy_hops": "1",
        **extra,
    }
    runtime: Runtime | None = None
    with ExitStack() as stack:
        try:
            # nginx's port is the issuer: choose it first, start nginx once the nodes answer
            nginx_port = services.free_port()
            settings["issuer"] = f"http://127.0.0.1:{nginx_port}"
            env = services.idp_env(**settings)
            assert services.run_idp("db", "upgrade", env=env).returncode == 0
            for email in users:
                made = services.run_idp(
                    "user", "create", email, "--password-stdin", env=env, stdin=PASSWORD + "\n"
                )
                assert made.returncode == 0, made.stderr
            runtime = Runtime(load_settings(overrides=settings, environ={}))
            cluster = Cluster(
                base=settings["issuer"],
                nodes=[NodeProcess(p, workdir / f"node-{i}.log") for i, p in enumerate(ports)],
                env=env,
                runtime=runtime,
                workdir=workdir,
                settings=settings,
            )
            for node in cluster.nodes:
                cluster.start_node(node, workers)
                stack.callback(cluster.stop, node)
            nginx_port_dir.mkdir(exist_ok=True)
            conf = _nginx_conf(nginx_port_dir, nginx_port, ports)
            out = (nginx_port_dir / "nginx.out").open("wb")
            stack.callback(out.close)
            proc = subprocess.Popen(
                [str(NGINX), "-c", str(conf), "-p", str(nginx_port_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            stack.callback(services.stop_process, proc)
            services.wait_until_up(cluster.base + "/healthz", proc)
            yield cluster
        finally:
            stack.close()
            if runtime is not None:
                runtime.store.delete_prefix()
                runtime.close()
            if database_url is None:
                services.drop_postgres_database(name)
            shutil.rmtree(workdir / "var", ignore_errors=True)

