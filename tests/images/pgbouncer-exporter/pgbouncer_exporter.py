#!/usr/bin/env python3
"""Stand-in for prometheuscommunity/pgbouncer-exporter (Debian has no build of it): the same flags
(--pgBouncer.connectionString, --web.listen-address, --web.telemetry-path), the password through
libpq's PGPASSFILE, and the upstream metric names for what the alert rules and dashboards read:
pgbouncer_up, pgbouncer_pools_{client,server}_*_connections{database,user} from SHOW POOLS and
pgbouncer_databases_pool_size{name,database} from SHOW DATABASES."""
from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

POOL_COLUMNS = {"cl_active": "client_active", "cl_waiting": "client_waiting",
                "sv_active": "server_active", "sv_idle": "server_idle", "sv_used": "server_used"}


def show(dsn: str, what: str) -> list[dict]:
    conn = psycopg2.connect(dsn, connect_timeout=3)
    conn.autocommit = True  # the admin console takes no transactions
    try:
        with conn.cursor() as cur:
            cur.execute(f"SHOW {what}")
            names = [column.name for column in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        conn.close()


def scrape(dsn: str) -> str:
    lines = []
    try:
        pools, databases = show(dsn, "POOLS"), show(dsn, "DATABASES")
    except psycopg2.Error as error:
        print(f"scrape failed: {error}".strip(), flush=True)
        return "# TYPE pgbouncer_up gauge\npgbouncer_up 0\n"
    lines += ["# TYPE pgbouncer_up gauge", "pgbouncer_up 1"]
    for column, metric in POOL_COLUMNS.items():
        lines.append(f"# TYPE pgbouncer_pools_{metric}_connections gauge")
        for pool in pools:
            if column in pool:
                lines.append(f'pgbouncer_pools_{metric}_connections{{database="{pool["database"]}",'
                             f'user="{pool["user"]}"}} {pool[column]}')
    lines.append("# TYPE pgbouncer_databases_pool_size gauge")
    for database in databases:
        lines.append(f'pgbouncer_databases_pool_size{{name="{database["name"]}",'
                     f'database="{database["database"]}"}} {database["pool_size"]}')
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pgBouncer.connectionString", dest="dsn",
                        default="postgres://postgres:@localhost:6543/pgbouncer?sslmode=disable")
    parser.add_argument("--web.listen-address", dest="listen", default=":9127")
    parser.add_argument("--web.telemetry-path", dest="path", default="/metrics")
    args, _ = parser.parse_known_args()
    host, _, port = args.listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            body = (scrape(args.dsn) if self.path.split("?")[0] == args.path else "pgbouncer exporter\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *items):
            pass

    ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
