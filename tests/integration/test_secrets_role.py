"""The secrets role against a real throwaway Debian 12 container (Ansible's docker connection).

Generated once (a second run changes nothing and keeps every value), never overwritten (a deleted
file is the only one regenerated), never printed (no value in the output at -vvv), 0700 / 0600,
values from the requested alphabet and length; supplied secrets follow their Vault value, and a
required one that is missing stops the run before anything is written.
SCRAM secrets (the `scram` entry point, for PostgreSQL and PgBouncer): a random salt each, so equal
passwords get different secrets; kept while they belong to their password, replaced when it changed.
The tests run without user-namespace remapping (root-owned files); the last one with it: every file's
owner is its container user's uid plus the remapping's base, as a remapped engine shows it inside.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import uuid

import pytest

from ansible_collections.freshtrack.deploy.plugins.module_utils.scram import verify

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("FRESHTRACK_HOST_IMAGE", "freshtrack-test/debian12-systemd:local")
DIR = "/opt/freshtrack/secrets"
PLAYBOOK = """
- name: Secrets role under test
  hosts: all
  gather_facts: false
  roles:
    - role: freshtrack.deploy.secrets
"""
SCRAM_PLAYBOOK = """
- name: Secrets role, the scram entry point
  hosts: all
  gather_facts: false
  tasks:
    - name: SCRAM secrets of two supplied passwords
      ansible.builtin.include_role:
        name: freshtrack.deploy.secrets
        tasks_from: scram
      vars:
        secrets_scram: [pw_a, pw_b]
"""


def sh(*args: str, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    name = f"freshtrack-secrets-{uuid.uuid4().hex[:8]}"
    sh("docker", "run", "-d", "--name", name, IMAGE, "sleep", "infinity")
    work = tmp_path_factory.mktemp("secrets")
    (work / "play.yml").write_text(PLAYBOOK)
    (work / "scram.yml").write_text(SCRAM_PLAYBOOK)
    (work / "hosts.yml").write_text(json.dumps({"all": {"hosts": {name: {
        "ansible_connection": "community.docker.docker"}}}}))
    try:
        yield name, work
    finally:
        sh("docker", "rm", "-f", name, check=False)


def converge(host, extra: dict, *args: str, playbook: str = "play.yml") -> subprocess.CompletedProcess:
    _name, work = host
    (work / "extra.json").write_text(json.dumps({"freshtrack_userns_remap": False, **extra}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    return subprocess.run(["ansible-playbook", str(work / playbook), "-i", str(work / "hosts.yml"),
                           "-e", f"@{work / 'extra.json'}", *args],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def read_secrets(host) -> dict[str, str]:
    name, _work = host
    listing = sh("docker", "exec", name, "sh", "-c", f"ls {DIR}").stdout.split()
    return {f: sh("docker", "exec", name, "cat", f"{DIR}/{f}").stdout for f in listing}


def recap(result) -> str:
    return re.search(r"^\S+\s*: ok=.*$", result.stdout, re.M).group(0)


SUPPLIED = {"secrets_supplied": {"stack_auth_secret_key": "sk-test-123456", "stripe_secret_key": ""},
            "secrets_supplied_required": ["stack_auth_secret_key"],
            # By default the app's secrets go to the app's user (uid 1000) and Grafana's and
            # Alertmanager's to theirs, for the stack's containers: here the role's own root-only files.
            "secrets_file_owners": {}}


def test_dry_run_on_a_fresh_host_writes_nothing(host):
    name, _work = host
    result = converge(host, SUPPLIED, "--check", "--diff")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "[WARNING]" not in result.stdout + result.stderr
    assert sh("docker", "exec", name, "test", "-e", DIR, check=False).returncode == 1


def test_generates_once_with_modes_alphabets_and_no_output(host):
    name, _work = host
    first = converge(host, SUPPLIED, "-vvv")
    assert first.returncode == 0, first.stdout[-3000:]
    values = read_secrets(host)
    assert set(values) == {"postgres_password", "jwt_secret", "minio_root_user", "minio_root_password",
                           "grafana_admin_password", "redis_password", "pgbouncer_auth_password",
                           "postgres_monitor_password",
                           "stack_auth_secret_key"}  # the empty stripe key is skipped
    assert re.fullmatch(r"[A-Za-z0-9]{40}", values["postgres_password"])
    assert re.fullmatch(r"[A-Za-z0-9]{64}", values["jwt_secret"])
    assert re.fullmatch(r"[a-z]{16}", values["minio_root_user"])
    assert values["stack_auth_secret_key"] == "sk-test-123456"
    assert len(set(values.values())) == len(values)  # no two alike
    for value in values.values():
        assert value not in first.stdout + first.stderr  # not even at -vvv
    modes = sh("docker", "exec", name, "stat", "-c", "%a %U %n", DIR, *[f"{DIR}/{f}" for f in values]).stdout
    lines = modes.splitlines()
    assert lines[0] == f"700 root {DIR}"
    assert all(line.startswith("600 root ") for line in lines[1:]), modes

    second = converge(host, SUPPLIED)
    assert "changed=0" in recap(second)
    assert read_secrets(host) == values


def test_only_a_deleted_secret_is_regenerated(host):
    name, _work = host
    before = read_secrets(host)
    sh("docker", "exec", name, "rm", f"{DIR}/jwt_secret")
    result = converge(host, SUPPLIED)
    assert result.returncode == 0
    after = read_secrets(host)
    assert after["jwt_secret"] != before["jwt_secret"]
    assert {k: v for k, v in after.items() if k != "jwt_secret"} == {
        k: v for k, v in before.items() if k != "jwt_secret"}


def test_an_owner_or_mode_changed_by_hand_is_put_back(host):
    name, _work = host
    before = read_secrets(host)
    sh("docker", "exec", name, "sh", "-c", f"chmod 0644 {DIR}/redis_password && chown 1000:1000 {DIR}/jwt_secret")
    dry = converge(host, SUPPLIED, "--check")
    assert "changed=1" in recap(dry), dry.stdout[-3000:]
    assert sh("docker", "exec", name, "stat", "-c", "%a", f"{DIR}/redis_password").stdout.strip() == "644"
    result = converge(host, SUPPLIED)
    assert "changed=1" in recap(result), result.stdout[-3000:]
    modes = sh("docker", "exec", name, "stat", "-c", "%a %u:%g", f"{DIR}/redis_password", f"{DIR}/jwt_secret")
    assert modes.stdout.split("\n")[:2] == ["600 0:0", "600 0:0"]
    assert read_secrets(host) == before


def test_supplied_secret_follows_vault(host):
    changed = dict(SUPPLIED, secrets_supplied={"stack_auth_secret_key": "sk-rotated-987"})
    result = converge(host, changed)
    assert "changed=1" in recap(result)
    assert read_secrets(host)["stack_auth_secret_key"] == "sk-rotated-987"
    assert "sk-rotated-987" not in result.stdout


def test_missing_required_secret_stops_before_any_change(host):
    name, _work = host
    before = read_secrets(host)
    result = converge(host, {"secrets_supplied": {}, "secrets_supplied_required": ["stack_auth_secret_key"]})
    assert result.returncode != 0
    assert "secrets_supplied_required: no value supplied for ['stack_auth_secret_key']" in result.stdout
    assert "changed=0" in recap(result)
    assert read_secrets(host) == before


def test_scram_secrets_random_salts_kept_until_the_password_changes(host):
    """Two equal passwords: two different secrets, each the password's; a re-run keeps them; a new
    password gets a new secret and leaves the other alone."""
    same = "same-password-0123456789"
    supplied = {"secrets_supplied": {"pw_a": same, "pw_b": same}, "secrets_file_owners": {}}
    assert converge(host, supplied).returncode == 0
    first = converge(host, supplied, "-vvv", playbook="scram.yml")
    assert first.returncode == 0, first.stdout[-3000:]
    secrets = read_secrets(host)
    a, b = secrets["pw_a_scram"], secrets["pw_b_scram"]
    assert a != b and verify(same, a) and verify(same, b)
    assert a not in first.stdout and same not in first.stdout  # never printed, even at -vvv
    modes = sh("docker", "exec", host[0], "stat", "-c", "%a %u", f"{DIR}/pw_a_scram", f"{DIR}/pw_b_scram").stdout
    assert modes.split("\n")[:2] == ["400 0", "400 0"]

    again = converge(host, supplied, playbook="scram.yml")
    assert "changed=0" in recap(again), again.stdout[-3000:]
    assert read_secrets(host)["pw_a_scram"] == a

    rotated = {"secrets_supplied": {"pw_a": "rotated-password-987654", "pw_b": same}, "secrets_file_owners": {}}
    assert converge(host, rotated).returncode == 0
    third = converge(host, rotated, playbook="scram.yml")
    assert "changed=1" in recap(third), third.stdout[-3000:]
    after = read_secrets(host)
    assert verify("rotated-password-987654", after["pw_a_scram"]) and after["pw_b_scram"] == b


def test_under_user_namespace_remapping_each_file_belongs_to_its_container_user_on_the_host(host):
    """Remapped, a container's uid N is host uid base + N: the app's secrets go to base + 65532, the
    SCRAM secret PostgreSQL's entrypoint reads as root to base + 0, the rest likewise to base + 0."""
    name, _work = host
    sh("docker", "exec", name, "rm", "-rf", DIR)
    remapped = {"freshtrack_userns_remap": True, "freshtrack_userns_base": 1000000,
                "secrets_supplied": {"pw_a": "a-password-123456", "pw_b": "b-password-123456"}}
    assert converge(host, remapped).returncode == 0
    assert converge(host, remapped, playbook="scram.yml").returncode == 0
    owners = dict(line.split(" ", 1)[::-1] for line in sh(
        "docker", "exec", name, "sh", "-c", f"cd {DIR} && stat -c '%u:%g %n' *").stdout.splitlines())
    assert owners["jwt_secret"] == owners["postgres_password"] == "1065532:1065532", owners
    assert owners["grafana_admin_password"] == "1000472:1000000", owners
    assert owners["pw_a_scram"] == owners["minio_root_user"] == "1000000:1000000", owners
    again = converge(host, remapped)
    assert "changed=0" in recap(again), recap(again)
