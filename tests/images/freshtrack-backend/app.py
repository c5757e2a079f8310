"""Stand-in FreshTrack backend for tests: standard library + psycopg2 only.

Endpoints: /health (database and Redis), /health/ready, /health/live, /metrics (Prometheus text),
POST /api/readings (one sensor reading, inserted through PgBouncer), GET /api/readings/count.
SIGTERM: /health/ready turns 503 at once, requests are still served for SHUTDOWN_DELAY_SECONDS (3)
while the proxy's health checks take the replica out, then the listener closes, in-flight requests
finish and it exits 0. ON_SIGTERM=exit is an app without that convention: ready to the end, it exits
at once, cutting whatever it was serving.

`app.py migrate` creates the schema and records APP_VERSION in schema_migrations, then exits.
`app.py worker` runs the background worker instead: every WORKER_INTERVAL seconds (2) it checks
the database and Redis and touches /tmp/worker-heartbeat (its healthcheck reads the file's age);
SIGTERM ends it after the current round.

Configuration (environment): PORT (3000), DB_HOST, DB_PORT, DB_NAME, DB_USER,
DB_PASSWORD_FILE, DB_SSLMODE and DB_SSLROOTCERT (libpq's sslmode and CA file: a managed database),
REDIS_HOST, REDIS_PORT, REDIS_PASSWORD_FILE, REDIS_TLS=true with REDIS_CA_FILE (TLS to Redis, the
server's name checked against REDIS_HOST), REQUEST_DB_TIMEOUT (10: seconds a reading waits for its
database connection; a database error answers 500 and logs why), APP_VERSION, and for fault tests
FAIL_HEALTH=1 (a broken version: health 503 and every reading refused with 500), SCHEMA_CHANGE=1 (migrate
also adds a column and rewrites the readings table, as v2 does), CRASH_ON_START=1
(exits 1 at once) and a `delay_ms` query parameter on POST /api/readings.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import psycopg2

VERSION = os.environ.get("APP_VERSION", "dev")
STARTED = time.time()
draining = threading.Event()
lock = threading.Lock()
requests_total: dict[tuple[str, str, int], int] = {}
# Request durations as a Prometheus histogram (the p95 latency alert and dashboard read it).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
duration_buckets = [0] * len(BUCKETS)
duration_sum = 0.0
duration_count = 0
readings_inserted = 0
in_flight = 0


def secret(name: str) -> str | None:
    path = os.environ.get(name + "_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    return os.environ.get(name)


def db_connect(timeout: int = 3):
    """A new connection (SCRAM through PgBouncer) per request. A request waits for one as long as an
    app's pool would (node-postgres: no limit; here REQUEST_DB_TIMEOUT, 10 s); health checks give up
    sooner. On a busy CPU a connection took more than 3 s and a reading was refused for it."""
    tls = {key: os.environ[name] for key, name in (("sslmode", "DB_SSLMODE"), ("sslrootcert", "DB_SSLROOTCERT"))
           if os.environ.get(name)}
    return psycopg2.connect(
        host=os.environ.get("DB_HOST", "pgbouncer"), port=int(os.environ.get("DB_PORT", "6432")),
        dbname=os.environ.get("DB_NAME", "freshtrack"), user=os.environ.get("DB_USER", "freshtrack"),
        password=secret("DB_PASSWORD"), connect_timeout=timeout, application_name="freshtrack-backend", **tls)


def first_line(error: Exception) -> str:
    """What a database error says, in one line (its class name when it says nothing)."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


REQUEST_DB_TIMEOUT = int(os.environ.get("REQUEST_DB_TIMEOUT", "10"))


def redis_connection(host: str, port: int) -> socket.socket:
    """A connection to Redis: TLS (the server's certificate checked, name included) when REDIS_TLS is true."""
    conn = socket.create_connection((host, port), timeout=2)
    if os.environ.get("REDIS_TLS", "false").lower() != "true":
        return conn
    context = ssl.create_default_context(cafile=os.environ.get("REDIS_CA_FILE") or None)
    try:
        return context.wrap_socket(conn, server_hostname=host)
    except (ssl.SSLError, OSError):
        conn.close()
        raise


def redis_ping() -> bool:
    """PING over RESP, with AUTH when a password is configured."""
    host, port = os.environ.get("REDIS_HOST"), int(os.environ.get("REDIS_PORT", "6379"))
    if not host:
        return True
    with redis_connection(host, port) as conn:
        password = secret("REDIS_PASSWORD")
        if password:
            conn.sendall(resp_command("AUTH", password))
            if not conn.recv(64).startswith(b"+OK"):
                return False
        conn.sendall(resp_command("PING"))
        return conn.recv(64).startswith(b"+PONG")


def resp_command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def ensure_schema() -> None:
    for _ in range(60):
        try:
            with db_connect() as conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS sensor_readings ("
                            " id bigserial PRIMARY KEY, sensor_id text NOT NULL,"
                            " temperature double precision NOT NULL,"
                            " recorded_at timestamptz NOT NULL DEFAULT now())")
            return
        except psycopg2.Error as error:
            print(f"waiting for the database: {error}".strip(), file=sys.stderr, flush=True)
            time.sleep(1)
    raise SystemExit("database never became reachable")


def render_metrics() -> str:
    lines = ["# HELP http_requests_total Requests served.", "# TYPE http_requests_total counter"]
    with lock:
        for (method, route, status), count in sorted(requests_total.items()):
            lines.append(f'http_requests_total{{method="{method}",route="{route}",status="{status}"}} {count}')
        lines += ["# HELP http_request_duration_seconds Time to answer a request.",
                  "# TYPE http_request_duration_seconds histogram"]
        lines += [f'http_request_duration_seconds_bucket{{le="{bound}"}} {count}'
                  for bound, count in zip(BUCKETS, duration_buckets)]
        lines += [f'http_request_duration_seconds_bucket{{le="+Inf"}} {duration_count}',
                  f"http_request_duration_seconds_sum {duration_sum:.6f}",
                  f"http_request_duration_seconds_count {duration_count}"]
        lines += ["# HELP readings_inserted_total Sensor readings stored.",
                  "# TYPE readings_inserted_total counter", f"readings_inserted_total {readings_inserted}",
                  "# TYPE http_requests_in_flight gauge", f"http_requests_in_flight {in_flight}"]
    lines += ["# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {STARTED:.3f}",
              f'freshtrack_build_info{{version="{VERSION}"}} 1']
    return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections close after this (like Node's keepAliveTimeout); the proxy closes its
    # idle ones sooner, so it never writes a request into a connection being closed here.
    timeout = 5

    def parse_request(self):  # the request line has just arrived (keep-alive idle time excluded)
        self.started = time.monotonic()
        return super().parse_request()

    def log_message(self, fmt, *args):  # one JSON line per request, like a real service
        print(json.dumps({"msg": fmt % args, "version": VERSION}), flush=True)

    def send(self, status: int, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(status)
        if draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        route = urlparse(self.path).path
        elapsed = time.monotonic() - getattr(self, "started", time.monotonic())
        global duration_sum, duration_count
        with lock:
            key = (self.command, route, status)
            requests_total[key] = requests_total.get(key, 0) + 1
            for index, bound in enumerate(BUCKETS):  # cumulative, as Prometheus expects
                if elapsed <= bound:
                    duration_buckets[index] += 1
            duration_sum += elapsed
            duration_count += 1

    def health(self):
        if os.environ.get("FAIL_HEALTH") == "1":
            return self.send(503, {"status": "unhealthy", "reason": "FAIL_HEALTH", "version": VERSION})
        state = {"version": VERSION}
        try:
            with db_connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
            state["database"] = "connected"
        except psycopg2.Error as error:
            # The reason (a refused certificate, say) tells a failed health check apart.
            state["database"] = "unreachable"
            state["database_error"] = first_line(error)
        try:
            state["redis"] = "connected" if redis_ping() else "unreachable"
        except OSError as error:
            state["redis"] = "unreachable"
            state["redis_error"] = str(error) or type(error).__name__
        healthy = state["database"] == "connected" and state["redis"] == "connected"
        state["status"] = "healthy" if healthy else "unhealthy"
        return self.send(200 if healthy else 503, state)

    def do_GET(self):
        path = urlparse(self.path).path
        if path == "/health":
            return self.health()
        if path == "/health/live":
            return self.send(200, {"status": "alive", "version": VERSION})
        if path == "/health/ready":
            if draining.is_set() or os.environ.get("FAIL_HEALTH") == "1":
                return self.send(503, {"status": "draining" if draining.is_set() else "unhealthy"})
            return self.send(200, {"status": "ready", "version": VERSION})
        if path == "/metrics":
            return self.send(200, render_metrics(), "text/plain; version=0.0.4")
        if path == "/api/readings/count":
            with db_connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM sensor_readings")
                return self.send(200, {"count": cur.fetchone()[0]})
        return self.send(404, {"error": "not found"})

    def do_POST(self):
        global readings_inserted, in_flight
        url = urlparse(self.path)
        if url.path != "/api/readings":
            return self.send(404, {"error": "not found"})
        if os.environ.get("FAIL_HEALTH") == "1":
            return self.send(500, {"error": "broken build", "version": VERSION})
        with lock:
            in_flight += 1
        try:
            length = int(self.headers.get("Content-Length") or 0)
            reading = json.loads(self.rfile.read(length) or b"{}")
            delay = int(parse_qs(url.query).get("delay_ms", ["0"])[0])
            if not isinstance(reading.get("sensor_id"), str) or not isinstance(
                    reading.get("temperature"), (int, float)):
                return self.send(400, {"error": "sensor_id (string) and temperature (number) are required"})
            time.sleep(min(delay, 30000) / 1000)
            try:
                with db_connect(REQUEST_DB_TIMEOUT) as conn, conn.cursor() as cur:
                    cur.execute("INSERT INTO sensor_readings (sensor_id, temperature) VALUES (%s, %s) RETURNING id",
                                (reading["sensor_id"], float(reading["temperature"])))
                    new_id = cur.fetchone()[0]
            except psycopg2.Error as error:  # an answer (500) and a log line that says why, as an app would
                print(json.dumps({"msg": "reading not stored: database error", "error": first_line(error),
                                  "seconds": round(time.monotonic() - self.started, 3), "version": VERSION}),
                      flush=True)
                return self.send(500, {"error": "database", "version": VERSION})
            with lock:
                readings_inserted += 1
            return self.send(201, {"id": new_id, "version": VERSION})
        finally:
            with lock:
                in_flight -= 1


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for in-flight requests
    block_on_close = True
    # Node's listen backlog (511), not socketserver's 5: with 5, a replica starved of CPU fills its
    # SYN queue, the kernel answers with SYN cookies, and some of those fail their check when the
    # proxy's request arrives: a reset of a connection the proxy holds open, a 502 about 1 s in
    # (scripts/measure-listen-backlog).
    request_queue_size = 511


def worker() -> None:
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    ensure_schema()
    print(json.dumps({"msg": "worker started", "version": VERSION}), flush=True)
    while not stopping.is_set():
        try:
            with db_connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM sensor_readings")
            if redis_ping():
                with open("/tmp/worker-heartbeat", "w", encoding="utf-8") as beat:
                    beat.write(str(time.time()))
        except (psycopg2.Error, OSError) as error:
            print(json.dumps({"msg": f"worker round failed: {error}".strip(), "version": VERSION}), flush=True)
        stopping.wait(float(os.environ.get("WORKER_INTERVAL", "2")))
    print(json.dumps({"msg": "worker stopped", "version": VERSION}), flush=True)


def main() -> None:
    if os.environ.get("CRASH_ON_START") == "1":
        raise SystemExit(f"version {VERSION}: crashing on start (CRASH_ON_START=1)")
    if sys.argv[1:] == ["worker"]:
        return worker()
    if sys.argv[1:] == ["migrate"]:  # what the deploy runs as a one-off container first
        ensure_schema()
        with db_connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY,"
                        " applied_at timestamptz NOT NULL DEFAULT now())")
            cur.execute("INSERT INTO schema_migrations (version) VALUES (%s) ON CONFLICT DO NOTHING", (VERSION,))
            if os.environ.get("SCHEMA_CHANGE") == "1":
                # A migration a rollback cannot undo by itself: a new column, and every row rewritten
                # (temperatures as numeric(6,2)); the previous version still writes to the table.
                cur.execute("ALTER TABLE sensor_readings ADD COLUMN IF NOT EXISTS unit text NOT NULL DEFAULT 'C'")
                cur.execute("ALTER TABLE sensor_readings ALTER COLUMN temperature TYPE numeric(6,2)")
        print(json.dumps({"msg": "migrated", "version": VERSION}), flush=True)
        return None
    ensure_schema()
    server = Server(("0.0.0.0", int(os.environ.get("PORT", "3000"))), Handler)

    def stop(signum, _frame):
        if os.environ.get("ON_SIGTERM") == "exit":  # no lame duck: connections and requests cut
            print(json.dumps({"msg": f"signal {signum}: exiting at once", "version": VERSION}), flush=True)
            os._exit(0)
        # Lame duck: readiness fails at once so the proxy's health checks take this replica out,
        # requests still arriving meanwhile are served, and only then the listener closes.
        draining.set()
        delay = float(os.environ.get("SHUTDOWN_DELAY_SECONDS", "3"))
        print(json.dumps({"msg": f"signal {signum}: draining, closing in {delay:g} s", "version": VERSION}), flush=True)

        def close_later():
            time.sleep(delay)
            server.shutdown()

        threading.Thread(target=close_later, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"msg": "listening", "port": server.server_address[1], "version": VERSION}), flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    print(json.dumps({"msg": "stopped after in-flight requests finished", "version": VERSION}), flush=True)


if __name__ == "__main__":
    main()
