"""Jobs run the way AWX runs them (scripts/lib/awx_job.py: ansible-runner over a private data
directory, no TTY, survey answers as strings), on the repository as AWX checks it out: without the
collections/ansible_collections link, the collection found only through what AWX's project sync
installed from collections/requirements.yml.

A deploy whose survey answer is bad fails before any change, and says which variable in its events;
the same job with a good answer gets past that check (it then stops at the next one, a host with no
stack on it, which is the deploy's own pre-flight doing its work).
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "lib"))
import awx_job  # noqa: E402

IMAGE = "freshtrack-test/debian12-systemd:local"
pytestmark = pytest.mark.skipif(subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0,
                                reason="needs a Docker engine")


@pytest.fixture(scope="module")
def host():
    name = f"freshtrack-awx-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, IMAGE, "sleep", "infinity"], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def deploy_job(host: str, tmp_path: pathlib.Path, answers: dict) -> dict:
    # The inventory AWX would hold for this host (a container reached through the Docker API).
    inventory = {"freshtrack": {"hosts": [host]},
                 "_meta": {"hostvars": {host: {"ansible_connection": "community.docker.docker_api",
                                               "ansible_user": "root",
                                               "freshtrack_domains": {"app": "app.freshtrack.test"}}}}}
    data = tmp_path / "job"
    awx_job.prepare(data, inventory, answers)
    return awx_job.launch(data, "playbooks/deploy.yml", "deploy", quiet=True)


def changed_events(job: dict) -> list:
    return [e for e in job["events"] if e.get("event") == "runner_on_ok" and e["event_data"].get("res", {}).get("changed")]


def test_the_project_as_awx_syncs_it_has_no_link_and_installs_the_collection(tmp_path):
    data = tmp_path / "job"
    awx_job.prepare(data, {"all": {}}, {})
    assert not (data / "project" / "collections" / "ansible_collections").exists()
    installed = data / "requirements_collections" / "ansible_collections" / "freshtrack" / "deploy"
    assert json.loads((installed / "MANIFEST.json").read_text())["collection_info"]["name"] == "deploy"
    assert (installed / "roles" / "deploy" / "tasks" / "begin.yml").is_file()


def test_a_bad_survey_answer_fails_before_any_change_naming_the_variable(host, tmp_path):
    job = deploy_job(host, tmp_path, {"deploy_image": "freshtrack-test/freshtrack-backend"})  # no tag: floating
    assert job["status"] == "failed" and job["rc"] != 0
    assert (job["artifacts"] / "stdout").stat().st_size > 0
    messages = [str(e["event_data"].get("res", {}).get("msg", "")) for e in job["failed"]]
    assert any("deploy_image must be a pinned image" in m for m in messages), messages
    # Found as AWX finds it: the installed collection, not a checkout.
    paths = {e["event_data"].get("task_path", "") for e in job["events"] if e["event_data"].get("task_path")}
    assert paths and all("requirements_collections/ansible_collections/freshtrack/deploy" in p
                         for p in paths if "roles/deploy" in p), paths
    # Nothing of the stack was touched; the lock is released.
    listing = subprocess.run(["docker", "exec", host, "sh", "-c", "ls /opt/freshtrack /run/lock/freshtrack-deploy 2>&1"],
                             capture_output=True, text=True, check=False).stdout
    assert listing.count("No such file") == 2, listing
    assert not [e["event_data"]["task"] for e in changed_events(job) if "audit" not in e["event_data"]["task"].lower()]


def test_a_good_answer_passes_the_check_the_bad_one_failed(host, tmp_path):
    job = deploy_job(host, tmp_path, {"deploy_image": "freshtrack-test/freshtrack-backend:1.2.0"})
    messages = [str(e["event_data"].get("res", {}).get("msg", "")) for e in job["failed"]]
    assert job["status"] == "failed" and messages  # no stack on this host: a later pre-flight check stops it
    assert not any("deploy_image" in m for m in messages), messages
