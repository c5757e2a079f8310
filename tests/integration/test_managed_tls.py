"""The app against managed-service stand-ins over TLS, as the managed targets configure it.

PostgreSQL 15 (Debian's) that accepts only TLS connections (hostssl) and Redis 7 (Debian's) that
speaks only TLS with a password, both with server certificates from a CA of the test's own, play
RDS / DigitalOcean's managed PostgreSQL and ElastiCache. They run beside the app on a network of
their own, as managed services do. The backend and worker stand-in images get exactly the
environment and read-only CA mount the stack role renders for the aws target (molecule/stack
checks that rendering: DB_SSLMODE=verify-full, DB_SSLROOTCERT, REDIS_TLS, REDIS_CA_FILE).

- With the right names: /health 200, a POSTed reading is in the database, and the server's own
  views (pg_stat_ssl, its connection log) show every app connection encrypted.
- The same servers reached by a name their certificates do not carry: the app refuses them
  (health 503 naming the certificate), for PostgreSQL and for Redis alike.
"""
from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from certmaker import key_pem, make_cert, pem  # noqa: E402

PG_IMAGE = "freshtrack-test/postgres15:local"
REDIS_IMAGE = "freshtrack-test/redis:local"
BACKEND_IMAGE = "freshtrack-test/freshtrack-backend:local"
DB_NAME, DB_ALIAS = "db.managed.test", "db-alias.managed.test"
REDIS_NAME, REDIS_ALIAS = "redis.managed.test", "redis-alias.managed.test"
CA_MOUNT = "/etc/freshtrack/ca"


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=300)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(predicate, what, timeout=90, last=None):
    """predicate's first true value; `last` (when given) says what was seen when time ran out."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.time() < deadline, f"{what} within {timeout} s; last seen: {last() if last else value}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def managed(tmp_path_factory):
    """The TLS stand-ins on a network of their own, and what an app needs to reach them."""
    work = tmp_path_factory.mktemp("managed")
    work.chmod(0o755)  # pytest makes it 0700: the stand-ins' users must enter it through the bind mount
    ca, ca_key = make_cert("FreshTrack test managed-services CA", ca=True)
    files = {"ca.pem": pem(ca)}
    for name in (DB_NAME, REDIS_NAME):
        cert, key = make_cert(name, issuer=ca, issuer_key=ca_key, sans=[name])
        files[f"{name}.crt"], files[f"{name}.key"] = pem(cert), key_pem(key)
    files["db_password"] = uuid.uuid4().hex.encode()
    files["redis_password"] = uuid.uuid4().hex.encode()
    for name, content in files.items():
        (work / name).write_bytes(content)
        (work / name).chmod(0o644)  # the stand-ins' users read them through the bind mount
    tag = uuid.uuid4().hex[:8]
    network, pg, redis = f"ft-managed-{tag}", f"ft-managed-pg-{tag}", f"ft-managed-redis-{tag}"
    sh("docker", "network", "create", network)
    try:
        # TLS only (hostssl), every connection logged with its TLS state.
        sh("docker", "run", "-d", "--name", pg, "--network", network, "--network-alias", DB_NAME, "--network-alias", DB_ALIAS,
           "-v", f"{work}:/certs:ro", "-e", f"POSTGRES_PASSWORD={files['db_password'].decode()}",
           "-e", "POSTGRES_USER=freshtrack", "-e", "POSTGRES_DB=freshtrack", "--entrypoint", "sh", PG_IMAGE, "-c",
           f"install -o postgres -g postgres -m 600 /certs/{DB_NAME}.key /etc/ssl/managed.key"
           f" && install -m 644 /certs/{DB_NAME}.crt /etc/ssl/managed.crt"
           " && mkdir -p /docker-entrypoint-initdb.d"
           " && echo 'sed -i \"s/^host /hostssl /\" \"$PGDATA/pg_hba.conf\"' > /docker-entrypoint-initdb.d/tls.sh"
           " && exec /usr/local/bin/docker-entrypoint.sh postgres -c ssl=on -c ssl_cert_file=/etc/ssl/managed.crt"
           " -c ssl_key_file=/etc/ssl/managed.key -c log_connections=on -c listen_addresses='*'")
        sh("docker", "run", "-d", "--name", redis, "--network", network, "--network-alias", REDIS_NAME,
           "--network-alias", REDIS_ALIAS, "-v", f"{work}:/certs:ro", REDIS_IMAGE, "redis-server", "--port", "0",
           "--tls-port", "6379", "--tls-cert-file", f"/certs/{REDIS_NAME}.crt", "--tls-key-file", f"/certs/{REDIS_NAME}.key",
           "--tls-ca-cert-file", "/certs/ca.pem", "--tls-auth-clients", "no", "--requirepass", files["redis_password"].decode())
        wait_for(lambda: sh("docker", "exec", pg, "pg_isready", "-q", "-h", "127.0.0.1", check=False).returncode == 0
                 and "database system is ready" in sh("docker", "logs", pg).stderr, "PostgreSQL ready")
        yield {"work": work, "network": network, "pg": pg, "redis": redis}
    finally:
        for container in (pg, redis):
            sh("docker", "rm", "-f", "-v", container, check=False)
        sh("docker", "network", "rm", network, check=False)


def start_app(managed, db_host=DB_NAME, redis_host=REDIS_NAME, command=()):
    """A backend (or worker) container with the aws target's environment and mounts."""
    name, port = f"ft-managed-app-{uuid.uuid4().hex[:8]}", free_port()
    work = managed["work"]
    env = {"DB_HOST": db_host, "DB_PORT": "5432", "DB_NAME": "freshtrack", "DB_USER": "freshtrack",
           "DB_PASSWORD_FILE": "/run/secrets/database_password", "DB_SSLMODE": "verify-full",
           "DB_SSLROOTCERT": f"{CA_MOUNT}/database.pem", "REDIS_HOST": redis_host, "REDIS_PORT": "6379",
           "REDIS_TLS": "true", "REDIS_CA_FILE": f"{CA_MOUNT}/redis.pem", "REDIS_PASSWORD_FILE": "/run/secrets/redis_password"}
    args = ["docker", "run", "-d", "--name", name, "--network", managed["network"], "-p", f"127.0.0.1:{port}:3000",
            "--read-only", "--tmpfs", "/tmp",
            "-v", f"{work}/ca.pem:{CA_MOUNT}/database.pem:ro", "-v", f"{work}/ca.pem:{CA_MOUNT}/redis.pem:ro",
            "-v", f"{work}/db_password:/run/secrets/database_password:ro",
            "-v", f"{work}/redis_password:/run/secrets/redis_password:ro"]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    sh(*args, BACKEND_IMAGE, *command)
    return name, f"http://127.0.0.1:{port}"


def test_the_app_talks_tls_to_the_managed_services_and_the_server_sees_it(managed):
    backend, url = start_app(managed)
    worker = start_app(managed, command=("python3", "/app/app.py", "worker"))[0]
    try:
        _status, body = wait_for(lambda: healthy(get_or_none(url + "/health")), "the backend healthy over TLS",
                                 last=lambda: (get_or_none(url + "/health"), sh("docker", "logs", "--tail", "5", backend).stderr))
        assert body["database"] == "connected" and body["redis"] == "connected", body
        request = urllib.request.Request(url + "/api/readings", method="POST", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"sensor_id": "walk-in-1", "temperature": 3.5}).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            reading_id = json.loads(response.read())["id"]
        row = sh("docker", "exec", managed["pg"], "psql", "-U", "freshtrack", "-d", "freshtrack", "-At", "-c",
                 f"SELECT sensor_id, temperature FROM sensor_readings WHERE id = {reading_id}").stdout.strip()
        assert row == "walk-in-1|3.5"
        # The worker keeps its connection between rounds: the server's view of it.
        ssl_rows = wait_for(lambda: app_connections_tls(managed["pg"]), "an app connection in pg_stat_activity")
        assert all(row.startswith("t|TLSv1.") for row in ssl_rows), ssl_rows
        authorized = [line for line in sh("docker", "logs", managed["pg"]).stderr.splitlines()
                      if "connection authorized" in line and "application_name=freshtrack-backend" in line]
        assert authorized and all("SSL enabled" in line for line in authorized), authorized[:5]
        print(f"{len(authorized)} app connections, all TLS: {ssl_rows}")
    finally:
        sh("docker", "rm", "-f", backend, worker, check=False)


def app_connections_tls(pg):
    """TLS state and version of the app's open connections, as the server sees them."""
    return sh("docker", "exec", pg, "psql", "-U", "freshtrack", "-d", "freshtrack", "-At", "-c",
              "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
              " WHERE a.application_name = 'freshtrack-backend'").stdout.split()


def first_attempt(container):
    """The container's log once it says it is waiting for its database."""
    text = sh("docker", "logs", container).stderr
    return text if "waiting for the database" in text else None


def healthy(answer):
    return answer if answer and answer[0] == 200 else None


def get_or_none(url):
    try:
        return get(url)
    except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
        return None


def test_a_database_certificate_for_another_name_is_refused(managed):
    """The same PostgreSQL, reached by a name its certificate does not carry: the app never connects
    (it waits for its database before it serves, saying why)."""
    backend, url = start_app(managed, db_host=DB_ALIAS)
    try:
        logs = wait_for(lambda: first_attempt(backend), "the backend's first attempt")
        assert f'server certificate for "{DB_NAME}" does not match host name "{DB_ALIAS}"' in logs, logs
        assert get_or_none(url + "/health") is None  # it serves nothing without its database
    finally:
        sh("docker", "rm", "-f", backend, check=False)


def test_a_redis_certificate_for_another_name_is_refused(managed):
    """The same Redis, reached by a name its certificate does not carry: health 503, naming the check."""
    backend, url = start_app(managed, redis_host=REDIS_ALIAS)
    try:
        status, body = wait_for(lambda: get_or_none(url + "/health"), "the backend answering")
        assert status == 503 and body["redis"] == "unreachable" and body["database"] == "connected", body
        assert "certificate verify failed" in body["redis_error"] and "Hostname mismatch" in body["redis_error"], body
    finally:
        sh("docker", "rm", "-f", backend, check=False)
