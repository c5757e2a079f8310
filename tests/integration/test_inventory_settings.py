"""Role variables set in an inventory's group_vars take effect, and site-wide values reach every role.

No play sets a role variable (tests/unit/test_play_vars.py), and each role's defaults derive from
the site-wide settings of roles/freshtrack, so the usual precedence holds: a role variable in
group_vars beats its derived default, for that role alone; a freshtrack_* value moves every role.
Each case runs every role's preflight against a throwaway Debian 12 container with an inventory
directory (hosts.yml + group_vars/freshtrack/main.yml) and reads what the roles resolved.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import uuid

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("FRESHTRACK_HOST_IMAGE", "freshtrack-test/debian12-systemd:local")
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "resolved_settings.yml"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoodKeyGoodKeyGoodKeyGoodKeyGoodKeyGoodKey0 test"
BASE = {"freshtrack_admin_user": "freshtrack", "hardening_admin_ssh_keys": [KEY],
        "freshtrack_domains": {"app": "app.example.com"}, "caddy_acme_email": "ops@example.com"}
MANAGED = {"freshtrack_target": "digitalocean",
           "stack_database": {"host": "db-freshtrack.db.ondigitalocean.com", "port": 25060, "name": "freshtrack",
                              "user": "doadmin", "sslmode": "require", "password_secret": "database_password"},
           "secrets_supplied": {"database_password": "not-a-real-password"},
           "secrets_supplied_required": ["database_password"]}


@pytest.fixture(scope="module")
def host():
    name = f"freshtrack-settings-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, IMAGE, "sleep", "infinity"],
                   check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def resolve(host: str, tmp_path: pathlib.Path, group_vars: dict) -> dict:
    """The roles' resolved variables for an inventory whose group_vars are `group_vars`."""
    (tmp_path / "group_vars" / "freshtrack").mkdir(parents=True)
    (tmp_path / "group_vars" / "freshtrack" / "main.yml").write_text(yaml.safe_dump(group_vars))
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"freshtrack": {"hosts": {
        host: {"ansible_connection": "community.docker.docker"}}}}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    result = subprocess.run(["ansible-playbook", str(PLAYBOOK), "-i", str(tmp_path / "hosts.yml")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    line = re.search(r'^\s*"msg": ("RESOLVED .*")$', result.stdout, re.M)
    assert line, result.stdout[-3000:]
    return json.loads(json.loads(line.group(1)).removeprefix("RESOLVED "))


def test_role_defaults_follow_the_site_wide_values(host, tmp_path):
    """The control case: only freshtrack_* values set; every role derives the same wiring."""
    got = resolve(host, tmp_path, dict(BASE, freshtrack_root="/srv/freshtrack", freshtrack_backend_replicas=3))
    assert got["hardening_admin_user"] == "freshtrack" and got["docker_users"] == ["freshtrack"]
    assert got["secrets_dir"] == "/srv/freshtrack/secrets"
    assert got["stack_dir"] == "/srv/freshtrack" and got["pgbouncer_secrets_dir"] == "/srv/freshtrack/secrets"
    assert got["caddy_config_dir"] == "/srv/freshtrack/caddy"
    assert got["observability_config_dir"] == "/srv/freshtrack/observability"
    assert got["stack_target"] == "selfhosted" and got["pgbouncer_enabled"] is True
    assert got["stack_backend_replicas"] == 3 and got["caddy_backend_slots"] == got["stack_rollout_proxy_slots"] == 6
    assert got["caddy_domains"] == {"app": "app.example.com", "api": "", "monitoring": "", "status": ""}
    assert got["caddy_tls_mode"] == "acme"
    assert got["backup_source"]["mode"] == "container" and got["backup_source"]["container"] == "freshtrack-postgres"


def test_role_variables_in_group_vars_take_effect(host, tmp_path):
    """Role variables set in group_vars win over their derived defaults, for their role alone."""
    got = resolve(host, tmp_path, dict(
        BASE, **MANAGED,
        pgbouncer_enabled=True,                    # our PgBouncer in front of a managed database
        hardening_admin_user="opsadmin",
        caddy_config_dir="/srv/edge/caddy",
        docker_log_max_size="50m",
        observability_postgres_exporter_enabled=True,
    ))
    assert got["pgbouncer_enabled"] is True and got["stack_target"] == "digitalocean"
    # The PgBouncer exporter follows PgBouncer; the PostgreSQL exporter was set on its own.
    assert got["observability_pgbouncer_exporter_enabled"] is True
    assert got["observability_postgres_exporter_enabled"] is True
    assert got["hardening_admin_user"] == "opsadmin"
    assert got["docker_users"] == ["freshtrack"]   # still freshtrack_admin_user: only hardening changed
    assert got["caddy_config_dir"] == "/srv/edge/caddy"
    assert got["stack_dir"] == "/opt/freshtrack" and got["pgbouncer_config_dir"] == "/opt/freshtrack/pgbouncer"
    assert got["docker_log_max_size"] == "50m"
    assert got["backup_source"]["mode"] == "endpoint"
    assert got["backup_source"]["host"] == "db-freshtrack.db.ondigitalocean.com"


def test_a_managed_target_without_overrides_keeps_pgbouncer_off(host, tmp_path):
    got = resolve(host, tmp_path, dict(BASE, **MANAGED))
    assert got["pgbouncer_enabled"] is False
    assert got["observability_pgbouncer_exporter_enabled"] is False
    assert got["observability_postgres_exporter_enabled"] is False
