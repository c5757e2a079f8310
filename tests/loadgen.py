"""Steady POST /api/readings load for the rolling restart tests (standard library only).

Requests go out on a fixed schedule (rate per second) from a pool of threads, each on its own
keep-alive connection, like sensor gateways behind one proxy. Every response is counted by status;
every exception (refused, reset, timeout) is a connection error. Each reading carries a unique
sensor_id, so the database can be checked against the 2xx count.

    python3 loadgen.py --url https://app.freshtrack.test/api/readings --connect-to 127.0.0.1 \
        --cafile root.crt --rate 60 --stop-file /tmp/load.stop --out /tmp/load.json

runs until the stop file exists (or --seconds pass) and writes a JSON summary.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import threading
import time
import uuid
from urllib.parse import urlparse


class _Connection:
    """One keep-alive connection to url's host, dialled at connect_to when given (no DNS needed)."""

    def __init__(self, url: str, connect_to: str | None, context: ssl.SSLContext | None, timeout: float):
        self.url = urlparse(url)
        self.connect_to = connect_to
        self.context = context
        self.timeout = timeout
        self.conn = None

    def _open(self):
        host = self.url.hostname
        port = self.url.port or (443 if self.url.scheme == "https" else 80)
        if self.url.scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self.context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        if self.connect_to:
            sock = socket.create_connection((self.connect_to, port), timeout=self.timeout)
            if self.url.scheme == "https":
                sock = self.context.wrap_socket(sock, server_hostname=host)
            conn.sock = sock
        return conn

    def post(self, body: bytes) -> int:
        if self.conn is None:
            self.conn = self._open()
        try:
            self.conn.request("POST", self.url.path or "/", body=body,
                              headers={"Content-Type": "application/json", "User-Agent": "freshtrack-loadgen"})
            response = self.conn.getresponse()
            response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status
        except Exception:
            self.close()
            raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Load:
    """Start with start(), end with stop(); summary() afterwards."""

    def __init__(self, url: str, rate: float = 60, threads: int = 16, connect_to: str | None = None,
                 cafile: str | None = None, timeout: float = 30, prefix: str = "load"):
        self.url, self.rate, self.threads, self.prefix = url, rate, threads, prefix
        self.connect_to, self.timeout = connect_to, timeout
        self.context = None
        if urlparse(url).scheme == "https":
            self.context = ssl.create_default_context(cafile=cafile)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.next_index = 0
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.first_error = None
        # Wall-clock start and end (epoch seconds) of each failed request, so a test can tell the
        # failures inside a planned pause (a restore's stopped writers) from any other.
        # [start, end, status or exception name] of each failed request.
        self.failed_at: list[list] = []
        self.workers: list[threading.Thread] = []
        self.started = self.ended = None

    def start(self):
        self.started = time.monotonic()
        self.workers = [threading.Thread(target=self._work, daemon=True) for _index in range(self.threads)]
        for worker in self.workers:
            worker.start()
        return self

    def _work(self):
        connection = _Connection(self.url, self.connect_to, self.context, self.timeout)
        while not self.stopping.is_set():
            with self.lock:
                index = self.next_index
                self.next_index += 1
            due = self.started + index / self.rate
            pause = due - time.monotonic()
            if pause > 0 and self.stopping.wait(pause):
                break
            body = json.dumps({"sensor_id": f"{self.prefix}-{uuid.uuid4()}", "temperature": 3.5}).encode()
            t0, wall0 = time.monotonic(), time.time()
            try:
                status = connection.post(body)
            except Exception as error:  # a failed request, whatever the cause
                with self.lock:
                    name = type(error).__name__
                    self.errors[name] = self.errors.get(name, 0) + 1
                    self.first_error = self.first_error or f"{name}: {error}"
                    self.failed_at.append([round(wall0, 3), round(time.time(), 3), name])
                continue
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.latencies.append(time.monotonic() - t0)
                if not 200 <= status < 300:
                    self.failed_at.append([round(wall0, 3), round(time.time(), 3), status])
        connection.close()

    def stop(self):
        self.stopping.set()
        for worker in self.workers:
            worker.join(self.timeout + 5)
        self.ended = time.monotonic()
        return self.summary()

    def summary(self) -> dict:
        with self.lock:
            statuses = dict(self.statuses)
            errors = dict(self.errors)
            latencies = sorted(self.latencies)
            failed_at = list(self.failed_at)
        ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
        sent = sum(statuses.values()) + sum(errors.values())
        seconds = (self.ended or time.monotonic()) - self.started

        def percentile(p):
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else None

        return {
            "sent": sent, "ok_2xx": ok, "non_2xx": sent - ok - sum(errors.values()),
            "connection_errors": sum(errors.values()), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": errors, "first_error": self.first_error, "failed_at": failed_at, "seconds": round(seconds, 2),
            "rate_achieved": round(sent / seconds, 1) if seconds else 0,
            "latency_ms": {"p50": percentile(0.50), "p99": percentile(0.99),
                           "max": round(latencies[-1] * 1000, 1) if latencies else None},
        }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=60)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--connect-to", help="IP address to dial instead of resolving the URL's host")
    parser.add_argument("--cafile")
    parser.add_argument("--prefix", default="load", help="sensor_id prefix, to count this run's rows")
    parser.add_argument("--seconds", type=float, help="stop after this long")
    parser.add_argument("--stop-file", help="stop once this file exists (the caller's: left in place, so "
                        "creating it never races a removal)")
    parser.add_argument("--out", help="write the JSON summary here (atomically) as well as to stdout")
    args = parser.parse_args(argv)
    load = Load(args.url, args.rate, args.threads, args.connect_to, args.cafile, prefix=args.prefix).start()
    while True:
        time.sleep(0.2)
        if args.seconds and time.monotonic() - load.started >= args.seconds:
            break
        if args.stop_file and os.path.exists(args.stop_file):
            break
    summary = json.dumps(load.stop(), indent=2)
    if args.out:
        with open(args.out + ".part", "w", encoding="utf-8") as handle:
            handle.write(summary + "\n")
        os.replace(args.out + ".part", args.out)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
