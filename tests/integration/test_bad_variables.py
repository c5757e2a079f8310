"""Bad variables fail before anything changes on the host, with a message naming the variable.

All the cases run in one real site.yml run against one throwaway Debian 12 container (Ansible's
docker connection): each case is an inventory host of its own, pointing at that container, with one
bad value in its host variables (where operators set them). Hosts fail independently, so one run
answers every case. A case passes when its host failed, the failure names the variable, and its
recap shows changed=0; and `docker diff` of the container shows no file touched outside the places
Ansible itself uses for its temporary files. A value the preflight let through would go on to
converge the container, and fail that last check too.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("FRESHTRACK_HOST_IMAGE", "freshtrack-test/debian12-systemd:local")
GOOD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoodKeyGoodKeyGoodKeyGoodKeyGoodKeyGoodKey0 test"
# Paths Ansible's own execution creates (temporary module files, fact cache).
ANSIBLE_SCRATCH = re.compile(r"^[ACD] /(root|root/\.ansible.*|tmp.*|var/tmp.*)$")
# A login account the fixture makes on the host: the app's uid must never be one's.
LOGIN_USER, LOGIN_UID = "ops", 2000
GOOD_VALUES = {
    "freshtrack_admin_user": "freshtrack", "hardening_admin_ssh_keys": [GOOD_KEY],
    "freshtrack_domains": {"app": "app.example.com"}, "caddy_acme_email": "ops@example.com",
}

# (variable, bad value, text the failure must contain).
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

# The stack: PgBouncer's connection budget, pinned images, domains, resources, targets, backups,
# monitoring.
STACK_CASES = [
    ("pgbouncer_default_pool_size", 200, "pgbouncer_default_pool_size: the pools need more connections than PostgreSQL allows"),
    ("freshtrack_postgres_max_connections", 30, "= 38 > max_connections 30"),
    ("pgbouncer_max_client_conn", 5000, "pgbouncer_max_client_conn: 5000 clients"),
    ("pgbouncer_pool_mode", "sessions", "pgbouncer_pool_mode"),
    ("stack_backend_image", "freshtrack-backend", "stack_backend_image: pin a version"),
    ("stack_postgres_image", "postgres:latest", "stack_postgres_image: pin a version"),
    ("caddy_image", "caddy:latest", "caddy_image: pin a version"),
    ("pgbouncer_image", "edoburu/pgbouncer", "pgbouncer_image: pin a version"),
    ("freshtrack_domains", {}, "freshtrack_domains.app: the app's host name is required"),
    ("freshtrack_domains", {"app": "App_Host!.example.com"}, "freshtrack_domains: keys are"),
    ("caddy_domains", {"app": "App_Host!.example.com"}, "caddy_domains: keys are"),
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


# Issue 19: values a tool judged too late (after staged files were written, or hours later), messages
# that named the role variable a freshtrack_* value feeds instead of the one the user set, type errors
# that came with a dump of the whole argument spec, and the app's uid.
LATE_CASES = [
    ("freshtrack_app_uid", 0, "freshtrack_app_uid: 0 is root"),
    ("freshtrack_app_uid", LOGIN_UID, f"freshtrack_app_uid: {LOGIN_UID} is the uid of the login account {LOGIN_USER}"),
    ("freshtrack_app_uid", 1000, "freshtrack_app_uid: 1000 is in the range useradd gives login accounts"),
    ("hardening_firewall_extra_rules", [{"port": "8000:7000", "proto": "tcp"}],
     "hardening_firewall_extra_rules: a port range is low:high with low below high"),
    ("observability_prometheus_retention_time", "0d", "observability_prometheus_retention_time: a Prometheus duration above zero"),
    ("backup_s3_endpoint_url", "minio.example:9000", "backup_s3_endpoint_url: empty (AWS) or a URL with its scheme"),
    ("freshtrack_root", "opt/freshtrack", "freshtrack_root: an absolute path"),
    ("hardening_ssh_allow_group", "ssh users", "hardening_ssh_allow_group: a group name groupadd accepts"),
    ("observability_ui_address", "localhost", "observability_ui_address: an IP address"),
    ("freshtrack_log_max_size", "ten megabytes", "freshtrack_log_max_size must be a number followed by k, m or g"),
    ("freshtrack_log_max_file", 0, "freshtrack_log_max_file must be between 1 and 100"),
    ("freshtrack_admin_user", "Ops Admin", "freshtrack_admin_user: a user name useradd accepts"),
    ("freshtrack_project", "Fresh Track", "freshtrack_project: lowercase letters, digits"),
    ("freshtrack_postgres_max_connections", 10, "freshtrack_postgres_max_connections"),
    # Ten more of the same kinds (a tool's rule, checked by that tool only when it ran).
    ("docker_default_address_pools", [{"base": "172.80.0.0/20", "size": 16}],
     "docker_default_address_pools: each size must be at least the base's prefix length"),
    ("backup_s3_bucket", "Fresh_Backups", "backup_s3_bucket: 3-63 lower-case letters"),
    ("backup_dir", "backups", "backup_dir: absolute paths"),
    ("hardening_firewall_extra_rules", [{"port": 5432, "proto": "tcp", "from": "10.0.0.300/24"}],
     "hardening_firewall_extra_rules: from is 'any', an IP address or a CIDR network"),
    ("caddy_backend_health_interval", "5 seconds", "caddy_backend_health_interval: durations as Caddy reads them"),
    ("hardening_ssh_port", 443, "hardening_ssh_port: 443 is one of hardening_firewall_public_ports"),
    ("observability_grafana_port", 9090, "three different ports"),
    ("backup_s3_region", "us east 1", "backup_s3_region: a region name"),
    ("hardening_fail2ban_ignoreip", ["10.0.0.0/33"], "hardening_fail2ban_ignoreip: IP addresses, CIDR networks or host names"),
    ("freshtrack_readings_table", "sensor readings", "freshtrack_readings_table / freshtrack_readings_time_column: plain SQL names"),
    ("hardening_ssh_group_members", ["CI Deploy"], "hardening_ssh_group_members: user names"),
    ("freshtrack_container_pids_limit", 10, "freshtrack_container_pids_limit: at least 64"),
    # A split layout whose database group is every case's host (the whole inventory group): one takes it.
    ("freshtrack_layout_groups", {"lb": "freshtrack", "app": "freshtrack", "db": "freshtrack", "monitoring": "freshtrack"},
     "The site's layout (freshtrack_layout_groups in the inventory): the group freshtrack (part db) lists"),
    ("freshtrack_layout_groups", {"lb": "freshtrack"}, "freshtrack_layout_groups"),
    ("freshtrack_app_port", 0, "freshtrack_app_port: a TCP port"),
    # User-namespace remapping: switched off on a host whose (remapped) Docker keeps the database's
    # volume, which would vanish from its sight; a range below the host's accounts; one overlapping
    # the subordinate ids useradd gave the login account.
    ("freshtrack_userns_remap", False, "freshtrack_userns_remap: False would switch Docker's user-namespace remapping off"),
    ("freshtrack_userns_base", 5000, "freshtrack_userns_base: 100000 or more"),
    ("freshtrack_userns_base", 120000, "overlaps the subordinate ids of ops (100000+65536)"),
    ("stack_edge_subnet", "172.23.255.7/24", "stack_edge_subnet: an IPv4 network from /16 to /28 without host bits"),
]
# Type errors: one line naming the variable, not Ansible's dump of the whole argument spec.
TYPE_CASES = [
    ("hardening_ssh_port", "twenty-two", "argument 'hardening_ssh_port' is of type"),
    ("freshtrack_backend_replicas", "two", "argument 'freshtrack_backend_replicas' is of type"),
    ("backup_min_free_gb", "lots", "argument 'backup_min_free_gb' is of type"),
    ("pgbouncer_max_client_conn", "many", "argument 'pgbouncer_max_client_conn' is of type"),
]


class Vars(dict):
    """A case's host variables when it takes more than one (a managed target and its settings);
    the case's variable is the one at fault, which the message must name."""


# Not a certificate anyone trusts: preflight looks at its shape only.
FAKE_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
DO_DATABASE = {"host": "db-freshtrack-do-user-1.db.ondigitalocean.com", "port": 25060, "user": "doadmin", "ca_cert": FAKE_PEM}
DO = {"freshtrack_target": "digitalocean", "stack_database": DO_DATABASE,
      "secrets_supplied": {"database_password": "do-password-0123456789"}, "secrets_supplied_required": ["database_password"]}
AWS = {"freshtrack_target": "aws",
       "stack_database": {"host": "freshtrack.c1.eu-central-1.rds.amazonaws.com", "ca_cert": FAKE_PEM},
       "stack_redis_endpoint": {"host": "master.freshtrack.c1.euc1.cache.amazonaws.com"},
       "stack_s3": {"bucket": "freshtrack-files", "region": "eu-central-1"},
       "secrets_supplied": {"database_password": "rds-password-0123456789", "redis_password": "elasticache-token-0123456789"},
       "secrets_supplied_required": ["database_password", "redis_password"]}
# Issue 17: the managed targets' settings.
MANAGED_CASES = [
    ("stack_database.ca_cert", Vars(DO, stack_database={k: v for k, v in DO_DATABASE.items() if k != "ca_cert"}),
     "stack_database.ca_cert: sslmode verify-full checks the server certificate against a CA"),
    ("stack_database.ca_cert", Vars(DO, stack_database=dict(DO_DATABASE, ca_cert="/etc/ssl/do-ca.crt")),
     "stack_database.ca_cert: PEM text"),
    ("stack_database.sslmode", Vars(DO, stack_database=dict(DO_DATABASE, sslmode="disable")), "sslmode"),
    ("stack_database.max_connections", Vars(DO, stack_app_db_pool_size=10),
     "(2 x 2 backend replicas + 2 x 1 worker) x stack_app_db_pool_size 10 + 2 for backups and migrations = 62 connections, over the 22"),
    ("stack_database.max_connections", Vars(DO, stack_database=dict(DO_DATABASE, pooler="provider", pool_name="app", pool_size=22)),
     "pool_size 22 + 2 for backups and migrations = 24 connections, over the 22"),
    ("stack_database.pooler", Vars(AWS, stack_database=dict(AWS["stack_database"], pooler="provider", pool_name="app", pool_size=10)),
     "stack_database.pooler: provider is DigitalOcean's connection pool"),
    ("stack_database.host", Vars(DO, stack_database=dict(DO_DATABASE, host="postgres://db.example.com:25060")),
     "stack_database.host: a host name alone"),
    ("stack_database", Vars(DO, stack_database=dict(DO_DATABASE, sslrootcert="/etc/ca.pem")), "sslrootcert"),
    ("stack_s3.region", Vars(AWS, stack_s3={"bucket": "freshtrack-files", "region": "eu-centrl-1"}),
     "stack_s3.region: an AWS region such as eu-central-1; got eu-centrl-1"),
    ("stack_redis_endpoint.tls", Vars(AWS, stack_redis_endpoint={"host": "master.c1.euc1.cache.amazonaws.com", "tls": False}),
     "stack_redis_endpoint.tls: ElastiCache takes an AUTH token only with TLS"),
    ("secrets_supplied_required", Vars(AWS, secrets_supplied_required=["database_password"],
                                       secrets_supplied={"database_password": "rds-password-0123456789"}),
     "on the aws target redis_password is ElastiCache's AUTH token"),
    ("backup_s3_region", Vars(DO, backup_s3_bucket="freshtrack-backups", backup_s3_endpoint_url="https://fra1.digitaloceanspaces.com",
                              backup_s3_region="fra9", backup_s3_access_key_id="DO00KEY", backup_s3_secret_access_key="secret"),
     "backup_s3_region: a Spaces region"),
    ("backup_s3_region", Vars(AWS, backup_s3_bucket="freshtrack-backups", backup_s3_region="europe-1"),
     "backup_s3_region: an AWS region such as eu-central-1 for AWS S3"),
    ("backup_s3_credentials", Vars(AWS, backup_s3_bucket="freshtrack-backups", backup_s3_region="eu-central-1",
                                   backup_s3_credentials="instance_profile", backup_s3_access_key_id="AKIAEXAMPLE",
                                   backup_s3_secret_access_key="secret"),
     "backup_s3_credentials: instance_profile keeps no static key"),
    # No AWS endpoint answers here: the id is named all the same, and nothing else is said of it.
    ("secrets_aws_secret_ids", Vars(AWS, secrets_aws_secret_ids={"database_password": "freshtrack/prod/no-such-secret"},
                                    secrets_aws_region="eu-central-1", secrets_aws_endpoint_url="http://127.0.0.1:9",
                                    secrets_supplied={"redis_password": "elasticache-token-0123456789"}),
     "no value read from AWS Secrets Manager at http://127.0.0.1:9 for 'freshtrack/prod/no-such-secret'"),
]
CASES = HOST_CASES + STACK_CASES + LATE_CASES + TYPE_CASES + MANAGED_CASES


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def case_host(index: int, variable: str) -> str:
    return f"case{index:02d}_{variable.replace('.', '_')}"


def run_site(inventory: dict, tmp_path: pathlib.Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """site.yml with the JSON callback: each host's task results and recap, in one document."""
    inventory_file = tmp_path / "hosts.json"
    inventory_file.write_text(json.dumps(inventory))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.json",  # not profile_tasks: it prints too
               ANSIBLE_FORKS="16", **(env_extra or {}))
    return subprocess.run(
        ["ansible-playbook", "site.yml", "-i", str(inventory_file), *args],
        # 266 s alone; more than 600 at nice 10 beside operations' deploys under load (the suite's lanes).
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )


def facts_gathered_once(container: str, tmp_path: pathlib.Path, host_names) -> dict:
    """The case hosts are one container: its facts gathered once (the preflight's subset) and filed
    in a fact cache under each case host's name. site.yml's preflight then gathers none again
    (gathering = smart): 99 fact gatherings were a fifth of the run. Returns the cache's settings."""
    cache = tmp_path / "facts"
    cache_env = {"ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache)}
    inventory = tmp_path / "seed.json"
    seed = {"ansible_connection": "community.docker.docker", "ansible_host": container}
    inventory.write_text(json.dumps({"all": {"hosts": {"seed": seed}}}))
    playbook = tmp_path / "gather.yml"
    playbook.write_text(json.dumps([{"name": "Facts of the container", "hosts": "seed", "gather_facts": True,
                                     "gather_subset": ["min", "virtual"], "tasks": []}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), **cache_env)
    subprocess.run(["ansible-playbook", "-i", str(inventory), str(playbook)],
                   cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True)
    # The cache names its file after the host, with a prefix of its own (ansible-core 2.21: "s1_").
    [seeded] = cache.glob("*seed")
    for name in host_names:
        shutil.copyfile(seeded, cache / (seeded.name[:-len("seed")] + name))
    return cache_env


def inventory_of(container: str, hosts: dict) -> dict:
    connection = {"ansible_connection": "community.docker.docker", "ansible_host": container}
    return {"all": {"children": {"freshtrack": {
        "vars": {**connection, **GOOD_VALUES},
        "hosts": hosts,
    }}}}


def failures_by_host(report: dict) -> dict:
    """Every failed task result of each host, as text to search for the variable's name."""
    failures: dict = {}
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for name, result in task.get("hosts", {}).items():
                if result.get("failed") or result.get("unreachable"):
                    failures.setdefault(name, []).append(json.dumps(result))
    return failures


@pytest.fixture(scope="module")
def container():
    name = f"freshtrack-badvars-{uuid.uuid4().hex[:8]}"
    # Facts and asserts need no systemd: a plain process keeps the container alive.
    docker("run", "-d", "--name", name, IMAGE, "sleep", "infinity")
    try:
        # useradd gives the login account subordinate ids (100000+65536) once /etc/subuid exists.
        docker("exec", name, "touch", "/etc/subuid", "/etc/subgid")
        docker("exec", name, "useradd", "--uid", str(LOGIN_UID), "--shell", "/bin/bash", LOGIN_USER)
        # A host whose Docker is remapped (the default) and keeps the database's volume.
        docker("exec", name, "sh", "-c", "mkdir -p /etc/docker /var/lib/docker/1000000.1000000/volumes/freshtrack_postgres_data"
               " && echo '{\"userns-remap\": \"dockremap\"}' > /etc/docker/daemon.json"
               " && echo dockremap:1000000:65536 >> /etc/subuid && echo dockremap:1000000:65536 >> /etc/subgid")
        # What the fixture itself changed, so the last test sees only what the runs changed.
        baseline = set(docker("diff", name).splitlines())
        yield name, baseline
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def bad_run(container, tmp_path_factory):
    """One site.yml run, every bad case a host of its own (the whole run, no tags)."""
    hosts = {case_host(i, case[0]): dict(case[1]) if isinstance(case[1], Vars) else {case[0]: case[1]}
             for i, case in enumerate(CASES)}
    scratch = tmp_path_factory.mktemp("bad")
    result = run_site(inventory_of(container[0], hosts), scratch, env_extra=facts_gathered_once(container[0], scratch, hosts))
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"site.yml printed no JSON report: {(result.stdout + result.stderr)[-3000:]}")
    return result, report


def test_good_values_pass_the_preflight(container, tmp_path):
    """The control case: with good values the same checks pass (only the preflight runs)."""
    result = run_site(inventory_of(container[0], {"good": {}}), tmp_path, "--tags", "preflight")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads(result.stdout)
    names = [task["task"]["name"] for play in report["plays"] for task in play["tasks"]]
    assert any("Check the variables against each other" in name for name in names), names
    assert report["stats"]["good"]["failures"] == 0, report["stats"]


@pytest.mark.parametrize("index,variable,value,expected", [(i, *case) for i, case in enumerate(CASES)],
                         ids=[f"{c[0]}={c[1]!r}"[:60] for c in CASES])
def test_bad_value_fails_before_any_change(bad_run, index, variable, value, expected):
    result, report = bad_run
    host = case_host(index, variable)
    failures = failures_by_host(report).get(host, [])
    assert result.returncode != 0
    assert failures, f"{host}: no task failed; recap {report['stats'].get(host)}"
    assert any(expected in failure for failure in failures), failures
    assert report["stats"][host]["changed"] == 0, report["stats"][host]
    # One failure, its message one line, no argument spec dumped with it.
    assert len(failures) == 1, failures
    failure = json.loads(failures[0])
    assert "\n" not in failure.get("msg", "").strip() and "argument_spec_data" not in failure, failure


def test_no_bad_value_touched_a_file(bad_run, container):
    """Run after every case's host failed: nothing on the container but Ansible's scratch files."""
    name, baseline = container
    touched = [line for line in docker("diff", name).splitlines()
               if line not in baseline and not ANSIBLE_SCRATCH.match(line)]
    assert touched == [], touched
