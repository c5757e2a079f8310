"""The service images the stack tests run (built from Debian packages by scripts/lib/images.sh)
honour the interface of the production images, checked with a real compose project:

- postgres15 initialises from POSTGRES_PASSWORD_FILE and speaks SCRAM on the network;
- pgbouncer serves a transaction pool from a read-only /etc/pgbouncer/pgbouncer.ini;
- redis requires its password; caddy validates and serves a Caddyfile;
- the stand-in backend stores a reading through PgBouncer, reports health and metrics, and on
  SIGTERM finishes the request in flight before it exits 0.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

IMAGES = {name: f"freshtrack-test/{name}:local" for name in
          ("postgres15", "pgbouncer", "redis", "caddy", "freshtrack-backend")}

COMPOSE = """
name: {project}
services:
  postgres:
    image: {postgres15}
    environment:
      POSTGRES_USER: freshtrack
      POSTGRES_DB: freshtrack
      POSTGRES_PASSWORD_FILE: /run/secrets/db_password
    secrets: [db_password]
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "freshtrack", "-d", "freshtrack"]
      interval: 1s
      retries: 60
  pgbouncer:
    image: {pgbouncer}
    volumes:
      - ./pgbouncer.ini:/etc/pgbouncer/pgbouncer.ini:ro
      - ./userlist.txt:/etc/pgbouncer/userlist.txt:ro
    depends_on: {{postgres: {{condition: service_healthy}}}}
    healthcheck:
      test: ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", "6432"]
      interval: 1s
      retries: 60
  redis:
    image: {redis}
    command: ["redis-server", "--requirepass", "redis-test-password"]
    healthcheck:
      test: ["CMD", "redis-cli", "-a", "redis-test-password", "--no-auth-warning", "ping"]
      interval: 1s
      retries: 60
  backend:
    image: {freshtrack-backend}
    environment:
      DB_HOST: pgbouncer
      DB_PORT: "6432"
      DB_PASSWORD_FILE: /run/secrets/db_password
      REDIS_HOST: redis
      REDIS_PASSWORD_FILE: /run/secrets/redis_password
      APP_VERSION: test-1
    secrets: [db_password, redis_password]
    ports: ["127.0.0.1::3000"]
    stop_grace_period: 30s
    depends_on:
      pgbouncer: {{condition: service_healthy}}
      redis: {{condition: service_healthy}}
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/health/ready')"]
      interval: 1s
      retries: 60
  caddy:
    image: {caddy}
    volumes: ["./Caddyfile:/etc/caddy/Caddyfile:ro"]
    ports: ["127.0.0.1::8080"]
    depends_on: {{backend: {{condition: service_healthy}}}}
secrets:
  db_password: {{file: ./db_password}}
  redis_password: {{file: ./redis_password}}
"""

PGBOUNCER_INI = """[databases]
freshtrack = host=postgres port=5432 dbname=freshtrack
[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/userlist.txt
admin_users = freshtrack
pool_mode = transaction
max_client_conn = 100
default_pool_size = 5
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits
"""

CADDYFILE = """:8080 {
    reverse_proxy backend:3000 {
        health_uri /health/ready
    }
}
"""


def sh(*args: str, cwd=None, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, check=check, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    for image in IMAGES.values():
        if sh("docker", "image", "inspect", image, check=False).returncode:
            pytest.fail(f"{image} is missing: run scripts/test (it builds the test images)")
    workdir = tmp_path_factory.mktemp("stack")
    project = f"ftimg{uuid.uuid4().hex[:8]}"
    (workdir / "compose.yaml").write_text(COMPOSE.format(project=project, **IMAGES))
    (workdir / "pgbouncer.ini").write_text(PGBOUNCER_INI)
    (workdir / "userlist.txt").write_text('"freshtrack" "db-test-password"\n')
    (workdir / "db_password").write_text("db-test-password")
    (workdir / "redis_password").write_text("redis-test-password")
    (workdir / "Caddyfile").write_text(CADDYFILE)
    for name in ("db_password", "redis_password"):
        (workdir / name).chmod(0o644)  # the containers' non-root users read them (test data only)
    up = sh("docker", "compose", "up", "-d", "--wait", cwd=workdir, check=False)
    try:
        assert up.returncode == 0, up.stderr + sh("docker", "compose", "logs", cwd=workdir).stdout[-4000:]
        yield workdir
    finally:
        sh("docker", "compose", "down", "--volumes", "--timeout", "5", cwd=workdir, check=False)


def port(workdir: pathlib.Path, service: str, container_port: int) -> int:
    out = sh("docker", "compose", "port", service, str(container_port), cwd=workdir).stdout
    return int(out.strip().rsplit(":", 1)[1])


def request(url: str, body: dict | None = None, timeout: float = 10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return response.status, json.loads(response.read() or b"{}")


def test_reading_is_stored_through_pgbouncer_transaction_pool(stack):
    base = f"http://127.0.0.1:{port(stack, 'backend', 3000)}"
    status, health = request(f"{base}/health")
    assert status == 200 and health["database"] == "connected" and health["redis"] == "connected"
    before = request(f"{base}/api/readings/count")[1]["count"]
    assert request(f"{base}/api/readings", {"sensor_id": "fridge-1", "temperature": 3.5})[0] == 201
    assert request(f"{base}/api/readings/count")[1]["count"] == before + 1
    stored = sh("docker", "compose", "exec", "-T", "postgres", "psql", "-U", "freshtrack", "-d", "freshtrack",
                "-tAc", "SELECT sensor_id, temperature FROM sensor_readings ORDER BY id DESC LIMIT 1", cwd=stack)
    assert stored.stdout.strip() == "fridge-1|3.5"
    pools = sh("docker", "compose", "exec", "-T", "-e", "PGPASSWORD=db-test-password", "pgbouncer", "psql",
               "-h", "127.0.0.1", "-p", "6432", "-U", "freshtrack", "pgbouncer", "-c", "SHOW POOLS", cwd=stack)
    assert "freshtrack" in pools.stdout and "transaction" in pools.stdout


def test_postgres_requires_scram_on_the_network(stack):
    hba = sh("docker", "compose", "exec", "-T", "postgres", "psql", "-U", "freshtrack", "-d", "freshtrack", "-tAc",
             "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'freshtrack'", cwd=stack)
    assert hba.stdout.strip() == "t"
    wrong = sh("docker", "compose", "exec", "-T", "-e", "PGPASSWORD=wrong", "pgbouncer", "psql", "-h", "postgres",
               "-U", "freshtrack", "-d", "freshtrack", "-c", "SELECT 1", cwd=stack, check=False)
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr


def test_redis_refuses_without_password(stack):
    out = sh("docker", "compose", "exec", "-T", "redis", "redis-cli", "ping", cwd=stack, check=False)
    assert "NOAUTH" in out.stdout + out.stderr


def test_caddy_proxies_to_the_backend(stack):
    status, body = request(f"http://127.0.0.1:{port(stack, 'caddy', 8080)}/health/ready")
    assert status == 200 and body["status"] == "ready"
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port(stack, 'backend', 3000)}/metrics", timeout=5).read()
    assert b"readings_inserted_total" in metrics and b'freshtrack_build_info{version="test-1"} 1' in metrics


def test_backend_finishes_in_flight_request_on_sigterm(stack):
    base = f"http://127.0.0.1:{port(stack, 'backend', 3000)}"
    result: dict = {}

    def slow_post():
        try:
            result["status"] = request(f"{base}/api/readings?delay_ms=2500",
                                       {"sensor_id": "freezer-2", "temperature": -18.0}, timeout=30)[0]
        except Exception as error:  # recorded, asserted below
            result["error"] = repr(error)

    worker = threading.Thread(target=slow_post)
    worker.start()
    time.sleep(0.8)  # the request is in flight
    started = time.monotonic()
    sh("docker", "compose", "stop", "-t", "30", "backend", cwd=stack)
    worker.join(30)
    assert result.get("status") == 201, result
    assert time.monotonic() - started < 20  # it exited on its own, not by SIGKILL after the grace period
    container = sh("docker", "compose", "ps", "-a", "-q", "backend", cwd=stack).stdout.strip()
    assert sh("docker", "inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip() == "0"
