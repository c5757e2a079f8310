"""A webhook receiver for tests: every POST body (JSON) is appended to --out as one line,
{"path": ..., "received": <unix time>, "body": ...}, and answered 200. It stops by itself after
--seconds. Standard library only (it runs in containers without pip)."""
from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=900)
    args = parser.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body.decode("utf-8", "replace")
            with lock, open(args.out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"path": self.path, "received": time.time(), "body": parsed}) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, fmt, *items):
            print(fmt % items, flush=True)

    server = ThreadingHTTPServer((args.address, args.port), Handler)
    threading.Timer(args.seconds, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
