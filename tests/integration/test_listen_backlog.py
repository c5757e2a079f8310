"""The backend stand-in keeps accepting connections when its host starves it of CPU.

scripts/lib/listen_backlog.py runs inside the stand-in's image, with its own Server class: a new
connection per request (as Caddy opens with keepalive off) at 100/s, while the server process gets
30 ms of every 230. With socketserver's default backlog of 5 the kernel falls back to SYN cookies,
and a connection whose cookie fails its check is reset after the client sent its request: the 502s
the operations scenario once saw about 1 s into a request. With the stand-in's backlog none is.
"""
from __future__ import annotations

import json
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "freshtrack-test/freshtrack-backend:local"
REPORT = ROOT / ".cache" / "reports" / "listen_backlog.json"


def test_a_starved_stand_in_resets_no_connection_where_a_backlog_of_5_overflows():
    run = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{ROOT / 'scripts/lib/listen_backlog.py'}:/check.py:ro",
         "--entrypoint", "python3", IMAGE, "/check.py", "--backlogs", "5,app"],
        capture_output=True, text=True, timeout=300, check=True)
    figures = json.loads(run.stdout)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(figures, indent=2) + "\n")
    default, stand_in = figures["runs"]
    # The check starved the server: socketserver's backlog of 5 overflowed (its resets are reported,
    # not required: whether a cookie fails is the kernel's timing).
    assert default["kernel"]["ListenOverflows"] > 0, default
    assert stand_in["stand_in"] and stand_in["backlog"] >= 128, stand_in
    assert stand_in["requests"] > 500, stand_in
    assert (stand_in["reset"], stand_in["other_errors"]) == (0, {}), stand_in
    assert stand_in["answered"] == stand_in["requests"], stand_in
    assert stand_in["kernel"]["SyncookiesFailed"] == 0, stand_in
