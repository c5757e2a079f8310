"""Deploy notifications (roles/deploy/tasks/notify.yml) through ansible-playbook against a real HTTP
receiver on 127.0.0.1: the started/succeeded/failed events arrive as JSON with a Slack-compatible
`text`, carry no secret, and a receiver that fails or is not there never fails the play."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-value-that-must-not-leak"


class Receiver(BaseHTTPRequestHandler):
    received: list = []
    status = 200

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append({"path": self.path, "body": json.loads(body), "type": self.headers["Content-Type"]})
        self.send_response(Receiver.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received, Receiver.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def play(tmp_path, url, event, error=""):
    playbook = tmp_path / "notify.yml"
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False,
        "vars": {"deploy_notify_webhook_url": url, "deploy_action": "deploy",
                 "deploy_image": "registry.example.com/freshtrack-backend:1.2.0",
                 "secrets_supplied": {"stripe_secret_key": SECRET}},
        "tasks": [
            {"name": "facts a deploy has by then", "ansible.builtin.set_fact": {
                "__deploy_from": "registry.example.com/freshtrack-backend:1.1.0", "__deploy_who": "alice",
                "__deploy_started": "2026-11-23T20:00:00Z", "__deploy_t0": 0, "__deploy_error": error}},
            {"name": "notify", "ansible.builtin.include_role": {"name": "freshtrack.deploy.deploy", "tasks_from": "notify"},
             "vars": {"__deploy_event": event}},
        ]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    return subprocess.run(["ansible-playbook", str(playbook), "-i", "localhost,", "-c", "local", "-v"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("event,error", [("started", ""), ("succeeded", ""), ("failed", "Stack | rollout: backend-3 is unhealthy")])
def test_each_event_arrives_as_json_without_secrets(tmp_path, receiver, event, error):
    url = f"http://127.0.0.1:{receiver.server_port}/hooks/deploys?token=abc123"
    out = play(tmp_path, url, event, error)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(Receiver.received) == 1
    got = Receiver.received[0]
    assert got["type"].startswith("application/json") and got["path"] == "/hooks/deploys?token=abc123"
    body = got["body"]
    assert body["event"] == f"deploy_{event}" and body["host"] == "localhost" and body["who"] == "alice"
    assert body["from"].endswith(":1.1.0") and body["to"].endswith(":1.2.0") and body["error"] == error
    assert body["text"].startswith(f"FreshTrack deploy {event} on localhost: ") and (error in body["text"])
    assert SECRET not in json.dumps(body)
    assert "abc123" not in out.stdout + out.stderr, "the webhook URL (with its token) appeared in the output"


def test_a_failing_or_missing_receiver_never_fails_the_deploy(tmp_path, receiver):
    Receiver.status = 500
    out = play(tmp_path, f"http://127.0.0.1:{receiver.server_port}/x", "started")
    assert out.returncode == 0 and "Deploy notification not delivered: HTTP 500" in out.stdout, out.stdout
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    out = play(tmp_path, f"http://127.0.0.1:{closed}/x", "started")
    assert out.returncode == 0 and "Deploy notification not delivered" in out.stdout, out.stdout


def test_no_url_sends_nothing(tmp_path, receiver):
    out = play(tmp_path, "", "started")
    assert out.returncode == 0 and Receiver.received == []
