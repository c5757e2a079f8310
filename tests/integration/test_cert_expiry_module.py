"""freshtrack.deploy.cert_expiry against real TLS servers on loopback (IPv4 and IPv6), with
certificates made here, run through ansible-playbook like a user runs it. Every not_after is
compared with what `openssl x509 -enddate` prints for the same certificate."""
from __future__ import annotations

import datetime
import os
import pathlib
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from certmaker import key_pem, make_cert, pem  # noqa: E402
from moduletask import run_module as run_task  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler_factory, family=socket.AF_INET, host="127.0.0.1"):
    server_class = type("S", (_Server,), {"address_family": family})
    server = server_class((host, 0), handler_factory)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def tls_handler(context, smtp=False):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            sock = self.request
            try:
                if smtp:
                    sock.sendall(b"220 test ESMTP\r\n")
                    sock.recv(1024)
                    sock.sendall(b"250-test\r\n250 STARTTLS\r\n")
                    sock.recv(1024)
                    sock.sendall(b"220 go ahead\r\n")
                with context.wrap_socket(sock, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass
    return Handler


class SilentHandler(socketserver.BaseRequestHandler):
    def handle(self):
        time.sleep(5)


class PlainHTTPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            self.request.recv(1024)
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """CA -> intermediate -> leaves; one server per case; the expected results."""
    tmp = tmp_path_factory.mktemp("certs")
    ca, ca_key = make_cert("FreshTrack Test Root", ca=True, not_before=NOW - 400 * DAY, not_after=NOW + 3650 * DAY)
    inter, inter_key = make_cert("FreshTrack Test Intermediate", ca=True, issuer=ca, issuer_key=ca_key,
                                 not_before=NOW - 300 * DAY, not_after=NOW + 1000 * DAY)
    (tmp / "ca.pem").write_bytes(pem(ca))
    name = "app.freshtrack.test"
    signed = dict(issuer=inter, issuer_key=inter_key)
    cases = {
        # case: (certificate kwargs, send intermediate, expected status)
        "valid": (dict(sans=(name, "127.0.0.1", "::1"), not_before=NOW - 10 * DAY, not_after=NOW + 80 * DAY, **signed), True, "ok"),
        "rsa": (dict(sans=(name, "127.0.0.1"), key_kind="rsa", not_before=NOW - 10 * DAY, not_after=NOW + 80 * DAY, **signed), True, "ok"),
        "expiring": (dict(sans=(name, "127.0.0.1"), not_before=NOW - 85 * DAY, not_after=NOW + 5 * DAY, **signed), True, "critical"),
        "expired": (dict(sans=(name, "127.0.0.1"), not_before=NOW - 100 * DAY, not_after=NOW - 10 * DAY, **signed), True, "expired"),
        "not_yet_valid": (dict(sans=(name, "127.0.0.1"), not_before=NOW + 2 * DAY, not_after=NOW + 92 * DAY, **signed), True, "not_yet_valid"),
        "self_signed": (dict(sans=(name, "127.0.0.1"), not_before=NOW - 10 * DAY, not_after=NOW + 80 * DAY), False, "invalid"),
        "wrong_name": (dict(sans=("other.example.com",), not_before=NOW - 10 * DAY, not_after=NOW + 80 * DAY, **signed), True, "invalid"),
        "incomplete_chain": (dict(sans=(name, "127.0.0.1"), not_before=NOW - 10 * DAY, not_after=NOW + 80 * DAY, **signed), False, "invalid"),
    }
    servers, expected, endpoints = [], {}, []
    for case, (kwargs, with_chain, status) in cases.items():
        cert, key = make_cert(name if case != "wrong_name" else "other.example.com", **kwargs)
        (tmp / f"{case}.pem").write_bytes(pem(cert, *([inter] if with_chain else [])))
        (tmp / f"{case}.key").write_bytes(key_pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / f"{case}.pem", tmp / f"{case}.key")
        families = [(socket.AF_INET, "127.0.0.1")] + ([(socket.AF_INET6, "::1")] if case == "valid" else [])
        for family, host in families:
            server = serve(tls_handler(context), family, host)
            servers.append(server)
            target = f"[{host}]:{server.server_address[1]}" if family == socket.AF_INET6 else f"{host}:{server.server_address[1]}"
            target += f" ({name})"
            endpoints.append({"host": host, "port": server.server_address[1], "server_name": name})
            expected[target] = (case, status, tmp / f"{case}.pem")
        if case == "valid":  # the same certificate behind SMTP STARTTLS
            server = serve(tls_handler(context, smtp=True))
            servers.append(server)
            endpoints.append({"host": "127.0.0.1", "port": server.server_address[1], "server_name": name, "starttls": "smtp"})
            expected[f"127.0.0.1:{server.server_address[1]} ({name})"] = ("smtp_starttls", "ok", tmp / "valid.pem")
    for case, handler in (("silent", SilentHandler), ("plain_http", PlainHTTPHandler)):
        server = serve(handler)
        servers.append(server)
        endpoints.append({"host": "127.0.0.1", "port": server.server_address[1]})
        expected[f"127.0.0.1:{server.server_address[1]}"] = (case, "unreachable", None)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    endpoints.append({"host": "127.0.0.1", "port": closed_port})
    expected[f"127.0.0.1:{closed_port}"] = ("closed_port", "unreachable", None)
    yield {"tmp": tmp, "endpoints": endpoints, "expected": expected}
    for server in servers:
        server.shutdown()


def run_module(tmp: pathlib.Path, args: dict, check: bool = False) -> dict:
    return run_task(tmp, "freshtrack.deploy.cert_expiry", args, check=check, timeout=120)


def openssl_enddate(path: pathlib.Path) -> str:
    line = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", str(path)],
                          capture_output=True, text=True, check=True).stdout.strip()
    stamp = datetime.datetime.strptime(line.split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_every_case_gets_its_status_and_openssl_dates(world):
    result = run_module(world["tmp"], {"endpoints": world["endpoints"], "ca_path": str(world["tmp"] / "ca.pem"),
                                       "timeout": 1.5, "fail_on": "never"})
    assert not result.get("failed"), result.get("msg")
    got = {r["target"]: r for r in result["results"]}
    assert set(got) == set(world["expected"])
    for target, (case, status, path) in world["expected"].items():
        entry = got[target]
        assert entry["status"] == status, (case, entry)
        if path is not None:
            assert entry["certificate"]["not_after"] == openssl_enddate(path), case
    by_case = {case: got[t] for t, (case, _s, _p) in world["expected"].items()}
    assert by_case["valid"]["chain_verified"] and by_case["valid"]["hostname_match"]
    assert len(by_case["valid"]["chain"]) == 2
    assert by_case["rsa"]["certificate"]["key_type"] == "RSA" and by_case["valid"]["certificate"]["key_type"] == "ECDSA"
    assert by_case["self_signed"]["chain_verified"] is False and by_case["self_signed"]["verify_error"]
    assert by_case["incomplete_chain"]["chain_verified"] is False and len(by_case["incomplete_chain"]["chain"]) == 1
    assert by_case["wrong_name"]["hostname_match"] is False and by_case["wrong_name"]["chain_verified"] is True
    assert "timed out" in by_case["silent"]["error"]
    assert "Connection refused" in by_case["closed_port"]["error"] or "ConnectionRefused" in by_case["closed_port"]["error"]
    assert by_case["plain_http"]["status"] == "unreachable"
    # A silent server costs its timeout, not everyone's: the whole run is about one timeout.
    assert result["elapsed_seconds"] < 4, result["elapsed_seconds"]
    assert result["worst_status"] == "expired"


def test_fail_on_names_the_failing_certificates_and_files_and_textfile(world, tmp_path):
    prom = tmp_path / "certs.prom"
    result = run_module(world["tmp"], {"endpoints": world["endpoints"][:2], "paths": [str(world["tmp"] / "expiring.pem")],
                                       "ca_path": str(world["tmp"] / "ca.pem"), "fail_on": "critical",
                                       "prometheus_textfile": str(prom)})
    assert result["failed"] and "expiring.pem: critical" in result["msg"], result["msg"]
    assert result["changed"] and 'status="critical"} 1' in prom.read_text()
    check = run_module(world["tmp"], {"paths": [str(world["tmp"] / "valid.pem")],
                                      "prometheus_textfile": str(tmp_path / "never.prom")}, check=True)
    assert check["results"][0]["status"] == "ok" and not (tmp_path / "never.prom").exists()


def test_bad_arguments_fail_clearly(world):
    result = run_module(world["tmp"], {"paths": ["/nonexistent.pem"], "critical_days": 20, "warning_days": 10})
    assert result["failed"] and "critical_days (20.0) must be between 0 and warning_days (10.0)" in result["msg"]


def test_postgres_starttls_against_a_real_postgresql(tmp_path):
    """PostgreSQL 15 (the stand-in image) with ssl=on and Debian's snakeoil certificate."""
    name = f"freshtrack-certcheck-pg-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--name", name, "-e", "POSTGRES_PASSWORD=unused", "-p", "127.0.0.1::5432",
                    "freshtrack-test/postgres15:local", "postgres", "-c", "ssl=on",
                    "-c", "ssl_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem",
                    "-c", "ssl_key_file=/etc/ssl/private/ssl-cert-snakeoil.key"], check=True, capture_output=True)
    try:
        port = int(subprocess.run(["docker", "port", name, "5432"], check=True, capture_output=True,
                                  text=True).stdout.strip().rsplit(":", 1)[1])
        for _attempt in range(60):
            if "ready to accept connections" in subprocess.run(["docker", "logs", name], capture_output=True,
                                                               text=True, check=False).stderr:
                break
            time.sleep(0.5)
        cert = tmp_path / "snakeoil.pem"
        cert.write_text(subprocess.run(["docker", "exec", name, "cat", "/etc/ssl/certs/ssl-cert-snakeoil.pem"],
                                       check=True, capture_output=True, text=True).stdout)
        result = run_module(tmp_path, {"endpoints": [{"host": "127.0.0.1", "port": port, "starttls": "postgres"}],
                                       "fail_on": "never"})
        entry = result["results"][0]
        assert entry["status"] == "invalid" and "self-signed" in entry["verify_error"], entry
        assert entry["certificate"]["not_after"] == openssl_enddate(cert)
        # The same certificate trusted explicitly: ok (the name is checked against the host asked for).
        trusted = run_module(tmp_path, {"endpoints": [{"host": "127.0.0.1", "port": port, "starttls": "postgres"}],
                                        "ca_path": str(cert), "fail_on": "never"})
        assert trusted["results"][0]["chain_verified"] is True, trusted["results"][0]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
