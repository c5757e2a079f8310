"""Connections reset by a replica starved of CPU, by listen backlog: run inside the backend stand-in's image.

The stand-in's own server class (/app/app.py) listens with its configured backlog and, for
comparison, with socketserver's default of 5. Each serves a minimal POST handler (no database: this
measures the listening socket, not the app) in a child process that is stopped and continued in a
cycle (SIGSTOP/SIGCONT: a process that gets a slice of CPU now and then, as on a loaded host), while
clients open a new connection per request at a steady rate, as Caddy does with keepalive off. Each
run has the container's network namespace to itself, so the kernel's TCP counters are its own.

Prints one JSON object: per backlog, requests, answers, connection resets, other errors, latency and
the kernel's counters (SYN cookies sent and failed, listen overflows, resets sent).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

COUNTERS = ("TCPReqQFullDoCookies", "SyncookiesSent", "SyncookiesFailed", "ListenOverflows", "OutRsts",
            "EstabResets")
BODY = b'{"sensor_id": "backlog-check", "temperature": 4.5}'


def kernel_counters() -> dict:
    """The TCP counters of this network namespace (/proc/net/netstat and /proc/net/snmp)."""
    values = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        with open(path, encoding="ascii") as handle:
            lines = handle.read().splitlines()
        for names, numbers in zip(lines[::2], lines[1::2]):
            values.update(zip(names.split()[1:], (int(n) for n in numbers.split()[1:])))
    return {name: values.get(name, 0) for name in COUNTERS}


class Created(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5

    def log_message(self, *_):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(201)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def stand_in_server():
    """The stand-in's Server class, from its module in its image."""
    sys.path.insert(0, "/app")
    from app import Server  # noqa: E402
    return Server


def serve(backlog: int, port: int) -> int:
    """A child process serving with the stand-in's Server class, listening with `backlog`."""
    server_class = type("Measured", (stand_in_server(),), {"request_queue_size": backlog})
    pid = os.fork()
    if pid == 0:
        server_class(("127.0.0.1", port), Created).serve_forever(poll_interval=0.2)
        os._exit(0)
    return pid


def one_request(port: int, results: list) -> None:
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"POST /api/readings HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(BODY))
            conn.sendall(BODY)  # a second segment, as a proxy streaming the body sends it
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
        outcome = "answered" if answer.startswith(b"HTTP/1.1 201") else "bad answer"
    except ConnectionResetError:
        outcome = "reset"
    except OSError as error:
        outcome = type(error).__name__
    results.append((outcome, time.monotonic() - started))


def measure(backlog: int, port: int, seconds: float, rate: float, run_ms: float, stop_ms: float) -> dict:
    before = kernel_counters()
    pid = serve(backlog, port)
    time.sleep(0.5)
    results, clients = [], []
    end = time.monotonic() + seconds

    def generate():
        while time.monotonic() < end:
            client = threading.Thread(target=one_request, args=(port, results))
            client.start()
            clients.append(client)
            time.sleep(1 / rate)

    generator = threading.Thread(target=generate)
    generator.start()
    while time.monotonic() < end:  # a slice of CPU now and then
        os.kill(pid, signal.SIGSTOP)
        time.sleep(stop_ms / 1000)
        os.kill(pid, signal.SIGCONT)
        time.sleep(run_ms / 1000)
    generator.join()
    for client in clients:
        client.join(60)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    after = kernel_counters()
    outcomes = {}
    for outcome, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    latencies = sorted(seconds for _, seconds in results)
    return {
        "backlog": backlog, "stand_in": backlog == stand_in_server().request_queue_size,
        "requests": len(results), "answered": outcomes.get("answered", 0), "reset": outcomes.get("reset", 0),
        "other_errors": {k: v for k, v in outcomes.items() if k not in ("answered", "reset")},
        "latency_s": {"p50": round(latencies[len(latencies) // 2], 3),
                      "p99": round(latencies[int(len(latencies) * 0.99)], 3), "max": round(latencies[-1], 3)},
        "kernel": {name: after[name] - before[name] for name in COUNTERS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlogs", default="5,app", help="comma-separated: numbers, or 'app' for the stand-in's own")
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--rate", type=float, default=100, help="new connections per second")
    parser.add_argument("--run-ms", type=float, default=30, help="how long the server runs in each cycle")
    parser.add_argument("--stop-ms", type=float, default=200, help="how long it is stopped in each cycle")
    args = parser.parse_args()
    backlogs = [stand_in_server().request_queue_size if item == "app" else int(item)
                for item in args.backlogs.split(",")]
    runs = [measure(backlog, 18300 + index, args.seconds, args.rate, args.run_ms, args.stop_ms)
            for index, backlog in enumerate(backlogs)]
    print(json.dumps({"cycle_ms": {"run": args.run_ms, "stopped": args.stop_ms}, "rate": args.rate,
                      "seconds": args.seconds, "runs": runs}))


if __name__ == "__main__":
    main()
