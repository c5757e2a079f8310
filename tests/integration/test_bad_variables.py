"""Bad variables fail before anything changes on the host, with a message naming the variable.

Each case runs the real site.yml against a throwaway Debian 12 container (Ansible's docker
connection) with one bad value. A case passes when the run fails, the failure names the variable,
the recap shows changed=0, and `docker diff` of the container shows no file touched outside the
places Ansible itself uses for its temporary files.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("FRESHTRACK_HOST_IMAGE", "freshtrack-test/debian12-systemd:local")
GOOD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoodKeyGoodKeyGoodKeyGoodKeyGoodKeyGoodKey0 test"
# Paths Ansible's own execution creates (temporary module files, fact cache).
ANSIBLE_SCRATCH = re.compile(r"^[ACD] /(root|root/\.ansible.*|tmp.*|var/tmp.*)$")

# (variable, bad value, text the failure must contain). Two lists, so the two halves run on the two
# workers of scripts/test (pytest-xdist --dist loadscope sends each class to one worker, which
# starts its own host container).
HOST_CASES = [
    ("hardening_ssh_port", 70000, "hardening_ssh_port must be between 1 and 65535"),
    ("hardening_firewall_extra_rules", [{"port": 8080, "proto": "icmp"}], "hardening_firewall_extra_rules"),
    ("hardening_firewall_public_ports", [{"port": "99999", "proto": "tcp"}], "hardening_firewall_public_ports"),
    ("docker_install_source", "snap", "docker_install_source"),
    ("docker_log_max_size", "ten megabytes", "docker_log_max_size"),
    ("docker_log_max_file", "three", "docker_log_max_file"),
    ("docker_default_address_pools", [{"base": "300.1.0.0/16", "size": 24}], "docker_default_address_pools"),
    ("hardening_admin_ssh_keys", [], "hardening_admin_ssh_keys"),
    ("hardening_admin_ssh_keys", ["not a public key"], "hardening_admin_ssh_keys"),
    ("hardening_ssh_permit_root_login", "yes", "hardening_ssh_permit_root_login"),
    ("hardening_ssh_kex_algorithms", ["ecdh-sha2-nistp256"], "hardening_ssh_kex_algorithms"),
    ("hardening_sysctl_overrides", {"net.ipv4.ip_forward": 0}, "hardening_sysctl_overrides"),
    ("hardening_fail2ban_bantime", "forever", "hardening_fail2ban_bantime"),
    ("hardening_unattended_upgrades_reboot_time", "25:00", "hardening_unattended_upgrades_reboot_time"),
    ("secrets_supplied_required", ["stack_auth_secret_key"], "secrets_supplied_required: no value supplied"),
    ("secrets_generated", {"postgres_password": {"length": 8}}, "secrets_generated: every length must be 16-256"),
]
STACK_CASES = [
    # The stack: PgBouncer's connection budget, pinned images, domains, resources, targets.
    ("pgbouncer_default_pool_size", 200, "pgbouncer_default_pool_size: the pools need more connections than PostgreSQL allows"),
    ("freshtrack_postgres_max_connections", 30, "= 38 > max_connections 30"),
    ("pgbouncer_max_client_conn", 5000, "pgbouncer_max_client_conn: 5000 clients"),
    ("pgbouncer_pool_mode", "sessions", "pgbouncer_pool_mode"),
    ("stack_backend_image", "freshtrack-backend", "stack_backend_image: pin a version"),
    ("stack_postgres_image", "postgres:latest", "stack_postgres_image: pin a version"),
    ("caddy_image", "caddy:latest", "caddy_image: pin a version"),
    ("pgbouncer_image", "edoburu/pgbouncer", "pgbouncer_image: pin a version"),
    ("freshtrack_domains", {}, "caddy_domains.app: the app's host name is required"),
    ("freshtrack_domains", {"app": "App_Host!.example.com"}, "caddy_domains: keys are"),
    ("caddy_acme_email", "", "caddy_acme_email: an e-mail address is required"),
    ("stack_backend_memory", "128M", "stack_backend_memory (128M) is below stack_backend_memory_reservation (512M)"),
    ("freshtrack_target", "kubernetes", "value of freshtrack_target must be one of: selfhosted, digitalocean, aws"),
    ("freshtrack_target", "digitalocean", "stack_database.host: the digitalocean target needs the managed PostgreSQL endpoint"),
    ("stack_backend_replicas", 0, "stack_backend_replicas: 1-20"),
    ("stack_healthcheck_interval", 0, "stack_healthcheck_interval: 1-60 seconds; got 0"),
    ("stack_backend_healthcheck", ["CMD", "curl", "-f", "http://localhost:3000/health"], "stack_backend_healthcheck: a list starting with CMD"),
    ("stack_app_env", {"STRIPE_SECRET_KEY": "sk_live_x"}, "stack_app_env: ['STRIPE_SECRET_KEY'] look like secrets"),
    ("images_archives", {"freshtrack-test/x:1": "/nonexistent/x.tar"}, "images_archives: no such archive on the controller"),
    ("cert_monitor_interval", "often", "cert_monitor_interval: a systemd time span"),
    # Backups.
    ("backup_schedule", "every night", "backup_schedule is not a systemd calendar expression"),
    ("backup_retention_local", {"daily": -1, "weekly": 4, "monthly": 0}, "backup_retention_local: daily, weekly and monthly are counts >= 0"),
    ("backup_retention_predeploy_days", -1, "backup_retention_predeploy_days: an age in days >= 0"),
    ("backup_encryption", "age", "backup_encryption_recipient must be an age public key"),
    ("backup_s3_access_key_id", "AKIAEXAMPLE", "backup_s3_access_key_id and backup_s3_secret_access_key go together"),
    ("observability_grafana_image", "grafana/grafana:latest", "observability_*_image: pin a version"),
    ("observability_prometheus_retention_time", "a month", "observability_prometheus_retention_time: a Prometheus duration"),
    ("observability_alert_webhook_urls", ["hooks.example.com/x"], "observability_alert_webhook_urls: http(s) URLs only"),
    ("observability_log_shipper", "fluentd", "observability_log_shipper"),
    # The exporter logging in as the database owner (a superuser) instead of its own pg_monitor login.
    ("observability_postgres", {"address": "postgres:5432", "db": "freshtrack", "user": "freshtrack",
                                "password_secret": "postgres_password", "container": "freshtrack-postgres",
                                "admin_user": "freshtrack"}, "observability_postgres.user: the exporter's own login"),
]


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    name = f"freshtrack-badvars-{uuid.uuid4().hex[:8]}"
    # Facts and asserts need no systemd: a plain process keeps the container alive.
    docker("run", "-d", "--name", name, IMAGE, "sleep", "infinity")
    inventory = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"freshtrack": {"hosts": {name: {
        "ansible_connection": "community.docker.docker", "ansible_host": name,
        "freshtrack_admin_user": "freshtrack", "hardening_admin_ssh_keys": [GOOD_KEY],
        "freshtrack_domains": {"app": "app.example.com"}, "caddy_acme_email": "ops@example.com",
    }}}}}}))
    try:
        yield name, inventory
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def run_site(inventory: pathlib.Path, extra: dict, tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    extra_file = tmp_path / "extra.json"
    extra_file.write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        ["ansible-playbook", "site.yml", "-i", str(inventory), "-e", f"@{extra_file}", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_good_values_pass_the_preflight(host, tmp_path):
    """The control case: with good values the same checks pass (only the preflight runs)."""
    name, inventory = host
    result = run_site(inventory, {}, tmp_path, "--tags", "preflight")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Check the variables against each other" in result.stdout
    assert docker("diff", name).strip() == "" or all(
        ANSIBLE_SCRATCH.match(line) for line in docker("diff", name).splitlines())


def check_bad_value(host, tmp_path, variable, value, expected):
    name, inventory = host
    result = run_site(inventory, {variable: value}, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert expected in output, output[-3000:]
    recap = re.search(r"^" + re.escape(name) + r"\s*:.*$", result.stdout, re.M)
    assert recap and "changed=0" in recap.group(0), output[-3000:]
    touched = [line for line in docker("diff", name).splitlines() if not ANSIBLE_SCRATCH.match(line)]
    assert touched == [], touched


def case_ids(cases):
    return [f"{c[0]}={c[1]!r}"[:60] for c in cases]


class TestHostBaseline:
    """Hardening, Docker and secrets."""

    @pytest.mark.parametrize("variable,value,expected", HOST_CASES, ids=case_ids(HOST_CASES))
    def test_bad_value_fails_before_any_change(self, host, tmp_path, variable, value, expected):
        check_bad_value(host, tmp_path, variable, value, expected)


class TestStack:
    """PgBouncer's budget, pinned images, domains, resources, targets, backups, monitoring."""

    @pytest.mark.parametrize("variable,value,expected", STACK_CASES, ids=case_ids(STACK_CASES))
    def test_bad_value_fails_before_any_change(self, host, tmp_path, variable, value, expected):
        check_bad_value(host, tmp_path, variable, value, expected)
