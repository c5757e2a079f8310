"""A job run the way AWX runs it: ansible-runner over a private data directory, no TTY.

    scripts/awx-job PLAYBOOK [--answers JSON] [--inventory PATH] [--ssh] [--ident NAME]

What AWX does for a job template, done here without AWX:
- project/: the repository as AWX checks it out (the tracked files of this working tree), without
  the collections/ansible_collections link a checkout uses; the project sync then installs
  collections/requirements.yml into requirements_collections/ from the project's directory, and
  the job's ANSIBLE_COLLECTIONS_PATH starts there, so freshtrack.deploy is found as an installed
  collection;
- inventory/: the project's inventory as AWX imports it (`ansible-inventory --list --export`) and
  hands it to a job (an inventory script printing that JSON);
  --ssh makes the hosts of inventories/local reachable over SSH as AWX would reach them (the admin
  user, the key scripts/deploy-local made, in env/ssh_key) instead of through the Docker API;
- env/extravars: the survey's answers, every value a string as AWX sends them;
- env/envvars, env/settings: the job's environment and runner settings.
It prints the job's status, rc, time, event count and the failing task, and exits with the job's rc.
The artifacts stay in <private data dir>/artifacts/<ident>/ (status, rc, stdout, job_events/).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
JOBS = ROOT / ".cache" / "awx-jobs"
# What AWX puts after the project's installed requirements (awx/main/tasks/jobs.py).
AWX_DEFAULT_COLLECTIONS = "~/.ansible/collections:/usr/share/ansible/collections"


def export_project(project: pathlib.Path) -> None:
    """The tracked files as they are in the working tree, like a checkout of the branch."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if name.startswith("collections/ansible_collections"):
            continue
        source = ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target = project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)


def project_sync(project: pathlib.Path, collections: pathlib.Path) -> None:
    """AWX's project update: ansible-galaxy in the project's directory."""
    # --offline: Galaxy is not reachable here; the dependencies are the ones already installed
    # (the `ansible` package), as in an execution environment that carries them.
    subprocess.run(["ansible-galaxy", "collection", "install", "-r", "collections/requirements.yml",
                    "-p", str(collections), "--offline", "--force"],
                   cwd=project, check=True, capture_output=True, text=True,
                   env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections)))


def inventory(project: pathlib.Path, source: str, ssh: bool) -> dict:
    """The project's inventory as AWX imports it: every group and host with its variables."""
    exported = json.loads(subprocess.run(
        ["ansible-inventory", "-i", source, "--list", "--export"], cwd=project, check=True,
        capture_output=True, text=True, env=dict(os.environ, ANSIBLE_CONFIG=str(project / "ansible.cfg"))).stdout)
    if ssh:
        for host, hostvars in exported.get("_meta", {}).get("hostvars", {}).items():
            address = subprocess.run(
                ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                 hostvars.get("ansible_host", host)], check=True, capture_output=True, text=True).stdout.split()[0]
            admin = exported.get("freshtrack", {}).get("vars", {}).get("freshtrack_admin_user", "freshtrack")
            hostvars.update(ansible_connection="ssh", ansible_host=address, ansible_user=admin,
                            ansible_ssh_common_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null")
    return exported


def prepare(data: pathlib.Path, inventory_data: dict, answers: dict, ssh_key: str | None = None) -> float:
    """The private data directory of one job: project (synced), inventory, env. Returns the sync's seconds."""
    shutil.rmtree(data, ignore_errors=True)
    project, collections = data / "project", data / "requirements_collections"
    (data / "env").mkdir(parents=True)
    (data / "inventory").mkdir()
    t0 = time.monotonic()
    export_project(project)
    project_sync(project, collections)
    synced = time.monotonic() - t0
    # As AWX hands a job its inventory: an executable inventory script printing the synced JSON.
    (data / "inventory.json").write_text(json.dumps(inventory_data))
    script = data / "inventory" / "hosts"
    script.write_text('#!/bin/sh\nif [ "$1" = --host ]; then echo "{}"; else cat "$(dirname "$0")/../inventory.json"; fi\n')
    script.chmod(0o755)
    # AWX sends survey answers and extra vars as they were typed: strings.
    strings = {key: value if isinstance(value, str) else json.dumps(value) for key, value in answers.items()}
    (data / "env" / "extravars").write_text(json.dumps(strings))
    (data / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_COLLECTIONS_PATH": f"{collections}:{AWX_DEFAULT_COLLECTIONS}",
        "ANSIBLE_FORCE_COLOR": "False", "ANSIBLE_HOST_KEY_CHECKING": "False", "PYTHONUNBUFFERED": "1"}))
    (data / "env" / "settings").write_text(json.dumps({"idle_timeout": 0, "job_timeout": 3600}))
    if ssh_key:
        (data / "env" / "ssh_key").write_text(ssh_key)
    return synced


def launch(data: pathlib.Path, playbook: str, ident: str, quiet: bool = False) -> dict:
    """ansible-runner on the private data directory, no TTY: the job's status, rc, time and events."""
    t0 = time.monotonic()
    subprocess.run(["ansible-runner", "run", str(data), "-p", playbook, "--ident", ident],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL if quiet else None, check=False,
                   env={k: v for k, v in os.environ.items() if k != "ANSIBLE_COLLECTIONS_PATH"})
    artifacts = data / "artifacts" / ident
    events = [json.loads(p.read_text()) for p in sorted((artifacts / "job_events").glob("*.json"),
                                                          key=lambda p: int(p.name.split("-")[0]))]
    return {"status": (artifacts / "status").read_text().strip(), "rc": int((artifacts / "rc").read_text().strip()),
            "seconds": time.monotonic() - t0, "events": events, "artifacts": artifacts,
            "failed": [e for e in events if e.get("event") in ("runner_on_failed", "runner_on_unreachable")
                       and not e.get("event_data", {}).get("ignore_errors")]}


def run(args) -> int:
    ident = args.ident or f"{pathlib.Path(args.playbook).stem}-{time.strftime('%Y%m%dT%H%M%S')}"
    data = JOBS / ident
    ssh_key = (ROOT / ".cache" / "local" / "admin_ed25519").read_text() if args.ssh else None
    # The inventory as AWX's sync imports it, from this checkout: inventories/local's admin key is a
    # value of this machine (admin_key.yml, written by scripts/deploy-local, not committed), as a
    # site's would be set in AWX or its vault.
    inventory_data = inventory(ROOT, args.inventory, args.ssh)
    synced = prepare(data, inventory_data, json.loads(args.answers), ssh_key)
    job = launch(data, args.playbook, ident, args.quiet)
    print(f"job {ident}: {args.playbook}: status {job['status']}, rc {job['rc']}; project sync {synced:.0f} s, "
          f"job {job['seconds']:.0f} s, {len(job['events'])} events ({job['artifacts']})")
    for event in job["failed"]:
        data_ = event["event_data"]
        print(f"  failed: {data_.get('host')}: {data_.get('task')}: {str(data_.get('res', {}).get('msg', ''))[:300]}")
    return job["rc"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("playbook", help="the job template's playbook, relative to the project (site.yml, playbooks/deploy.yml)")
    parser.add_argument("--answers", default="{}", help="the survey's answers (JSON); sent as strings")
    parser.add_argument("--inventory", default="inventories/local/hosts.yml", help="the project's inventory AWX imports")
    parser.add_argument("--ssh", action="store_true", help="reach the hosts over SSH as the admin user (deploy-local's key)")
    parser.add_argument("--ident", help="the job's name (default: playbook and time)")
    parser.add_argument("--quiet", action="store_true", help="no job output, only the summary")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
