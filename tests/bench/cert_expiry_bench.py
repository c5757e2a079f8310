"""50 TLS endpoints on loopback, checked (1) by one freshtrack.deploy.cert_expiry task and (2) by
community.crypto.get_certificate in a loop, each as a whole ansible-playbook run, side by side in
one run of this script. Prints wall times, the module's own elapsed time and the ratio."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from certmaker import key_pem, make_cert, pem  # noqa: E402
from test_cert_expiry_module import serve, tls_handler  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
COUNT = int(os.environ.get("ENDPOINTS", "50"))


def playbook(path: pathlib.Path, tasks: list) -> None:
    path.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))


def run(path: pathlib.Path) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOCALHOST_WARNING="false")
    started = time.monotonic()
    out = subprocess.run(["ansible-playbook", str(path), "-i", "localhost,", "-c", "local"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(out.stdout[-3000:] + out.stderr[-3000:])
    return elapsed, out.stdout


def main() -> None:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="cert-bench-"))
    ca, ca_key = make_cert("Bench CA", ca=True)
    (tmp / "ca.pem").write_bytes(pem(ca))
    servers, endpoints = [], []
    for index in range(COUNT):
        name = f"site{index}.freshtrack.test"
        cert, key = make_cert(name, issuer=ca, issuer_key=ca_key, sans=(name,))
        (tmp / f"{index}.pem").write_bytes(pem(cert))
        (tmp / f"{index}.key").write_bytes(key_pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / f"{index}.pem", tmp / f"{index}.key")
        server = serve(tls_handler(context), socket.AF_INET, "127.0.0.1")
        servers.append(server)
        endpoints.append({"host": "127.0.0.1", "port": server.server_address[1], "server_name": name})

    ours = tmp / "cert_expiry.yml"
    playbook(ours, [{"name": "cert_expiry", "freshtrack.deploy.cert_expiry": {
        "endpoints": endpoints, "ca_path": str(tmp / "ca.pem"), "fail_on": "warning"}, "register": "r"}])
    theirs = tmp / "get_certificate.yml"
    playbook(theirs, [{"name": "get_certificate", "community.crypto.get_certificate": {
        "host": "{{ item.host }}", "port": "{{ item.port }}", "server_name": "{{ item.server_name }}",
        "ca_cert": str(tmp / "ca.pem")}, "loop": endpoints}])

    ours_wall, ours_out = run(ours)
    theirs_wall, _theirs_out = run(theirs)
    data, _end = json.JSONDecoder().raw_decode(ours_out[ours_out.index("{"):])
    module = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert module["summary"] == {"ok": COUNT}, module["summary"]
    print(f"\n{'measure (' + str(COUNT) + ' endpoints, one run)':<60} {'seconds':>8}")
    print(f"{'-' * 60} {'-' * 8}")
    print(f"{'cert_expiry: one task, whole ansible-playbook run':<60} {ours_wall:8.2f}")
    print(f"{'cert_expiry: the module alone (elapsed_seconds)':<60} {module['elapsed_seconds']:8.2f}")
    print(f"{'community.crypto.get_certificate loop, whole run':<60} {theirs_wall:8.2f}")
    print(f"{'ratio get_certificate loop / cert_expiry (whole runs)':<60} {theirs_wall / ours_wall:8.1f}x")
    for server in servers:
        server.shutdown()


if __name__ == "__main__":
    main()
