"""The observability role's Prometheus, Alertmanager and blackbox configurations, rendered from their
templates with the role's variables (several receiver combinations), pass the tools' own checks:
`promtool check config` (which also loads the alert rules), `amtool check-config` and
`prometheus-blackbox-exporter --config.check` (Debian 12's prometheus 2.42, alertmanager 0.25,
blackbox exporter 0.23)."""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import jinja2
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "observability"
RULES_DIR = ROLE / "files" / "prometheus" / "rules"

ROLE_METRICS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["_observability_metrics"]
BASE = {
    "observability_scrape_interval": "15s",
    "observability_host_label": "prod-1",
    "observability_prometheus_rules_dir": str(RULES_DIR),
    # Every service with metrics switched on (the role's own table), on the one-host layout.
    "_observability_scrape_targets": list(ROLE_METRICS.values()),
    "_observability_static_jobs": list(dict.fromkeys(t["job"] for t in ROLE_METRICS.values())),
    "_observability_central": True,
    "_observability_remote_targets": [],
    "freshtrack_layout": {"mode": "single", "parts": ["lb", "app", "db", "monitoring"], "hosts": {"monitoring": ["prod-1"]}},
    "observability_probe_urls": ["https://app.example.com/health", "https://api.example.com/health"],
    "observability_probe_ca_dir": "",
    "observability_alert_email": {},
    "observability_alert_slack_enabled": False,
    "observability_alert_slack_channel": "#freshtrack-alerts",
    "observability_alert_webhook_urls": [],
    "observability_deadman_webhook_url": "",
    "observability_alert_group_wait": "30s",
    "observability_alert_group_interval": "5m",
    "observability_alert_repeat_interval": "4h",
}
RECEIVERS = {
    "none": {},
    "email": {"observability_alert_email": {"to": "ops@example.com", "from": "alerts@example.com",
                                            "smarthost": "smtp.example.com:587", "username": "alerts"}},
    "slack+webhook+deadman": {"observability_alert_slack_enabled": True,
                              "observability_alert_webhook_urls": ["http://127.0.0.1:9999/alerts"],
                              "observability_deadman_webhook_url": "https://hc-ping.example.com/3f2a"},
}


def render(name: str, overrides: dict) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    return env.get_template(name).render(**{**BASE, **overrides})


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs {name} (Debian: prometheus, prometheus-alertmanager, prometheus-blackbox-exporter)")
    return path


def test_prometheus_config_and_rules(tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text(render("prometheus.yml.j2", {}))
    parsed = yaml.safe_load(config.read_text())
    jobs = {job["job_name"] for job in parsed["scrape_configs"]}
    assert jobs == {"prometheus", "backend", "blackbox-http"} | {t["job"] for t in ROLE_METRICS.values()}
    # Every job an alert rule names is scraped.
    assert set(re.findall(r'job="([a-z-]+)"', (RULES_DIR / "freshtrack.rules.yml").read_text())) <= jobs
    out = subprocess.run([tool("promtool"), "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout and "rules found" in out.stdout


# A split site (lb1 with the monitoring, app1, app2, db1), as site_scrape_targets gives it the
# monitoring host's targets on the other hosts.
SPLIT_REMOTE = [{"job": "node", "host": name, "address": f"10.0.0.{n}:9100"} for n, name in ((3, "app1"), (4, "app2"), (5, "db1"))] + [
    {"job": "federate", "host": "app1", "address": "10.0.0.3:9090"}, {"job": "federate", "host": "app2", "address": "10.0.0.4:9090"},
    {"job": "postgres", "host": "db1", "address": "10.0.0.5:9187"}, {"job": "redis", "host": "db1", "address": "10.0.0.5:9121"}]
SPLIT_CENTRAL_LOCAL = [ROLE_METRICS[name] for name in ("alertmanager", "node-exporter")]


def test_split_site_monitoring_host_config(tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text(render("prometheus.yml.j2", {
        "_observability_scrape_targets": SPLIT_CENTRAL_LOCAL, "_observability_remote_targets": SPLIT_REMOTE,
        "_observability_static_jobs": ["alertmanager", "node", "postgres", "redis"],
        "freshtrack_layout": {"mode": "split", "parts": ["lb", "monitoring"], "hosts": {"monitoring": ["lb1"]}}}))
    parsed = yaml.safe_load(config.read_text())
    jobs = {job["job_name"]: job for job in parsed["scrape_configs"]}
    # No backend here: the app hosts' replicas come through federation, with their own labels.
    assert set(jobs) == {"prometheus", "alertmanager", "node", "postgres", "redis", "federate", "blackbox-http"}
    node = [(group["targets"], group["labels"]["host"]) for group in jobs["node"]["static_configs"]]
    assert node == [(["node-exporter:9100"], "prod-1"), (["10.0.0.3:9100"], "app1"), (["10.0.0.4:9100"], "app2"),
                    (["10.0.0.5:9100"], "db1")]
    federate = jobs["federate"]
    assert federate["honor_labels"] is True and federate["metrics_path"] == "/federate"
    assert federate["params"] == {"match[]": ['{job="backend"}']}
    assert [group["targets"] for group in federate["static_configs"]] == [["10.0.0.3:9090"], ["10.0.0.4:9090"]]
    assert parsed["rule_files"] and parsed["alerting"]
    out = subprocess.run([tool("promtool"), "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_split_site_app_host_config(tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text(render("prometheus.yml.j2", {
        "_observability_central": False, "_observability_scrape_targets": [ROLE_METRICS["node-exporter"]],
        "_observability_static_jobs": ["node"],
        "freshtrack_layout": {"mode": "split", "parts": ["app"], "hosts": {"monitoring": ["lb1"]}}}))
    parsed = yaml.safe_load(config.read_text())
    # Its replicas only (the monitoring host scrapes its node-exporter itself); no rules, no Alertmanager.
    assert [job["job_name"] for job in parsed["scrape_configs"]] == ["prometheus", "backend"]
    assert "rule_files" not in parsed and "alerting" not in parsed
    out = subprocess.run([tool("promtool"), "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("receivers", RECEIVERS, ids=list(RECEIVERS))
def test_alertmanager_config(tmp_path, receivers):
    config = tmp_path / "alertmanager.yml"
    config.write_text(render("alertmanager.yml.j2", RECEIVERS[receivers]))
    out = subprocess.run([tool("amtool"), "check-config", str(config)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, config.read_text() + out.stdout + out.stderr
    route = yaml.safe_load(config.read_text())["route"]
    assert route["routes"][0]["matchers"] == ['alertname="MonitoringPipelineDead"']


@pytest.mark.parametrize("ca_dir", ["", "/var/lib/caddy-ca"])
def test_blackbox_config(tmp_path, ca_dir):
    config = tmp_path / "blackbox.yml"
    config.write_text(render("blackbox.yml.j2", {"observability_probe_ca_dir": ca_dir}))
    out = subprocess.run([tool("prometheus-blackbox-exporter"), "--config.check", f"--config.file={config}"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_broken_config_fails_the_tools(tmp_path):
    """The checks can fail: an unknown key, and a rule file that does not parse."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(render("alertmanager.yml.j2", {}).replace("group_wait: 30s", "group_wait: soon"))
    assert subprocess.run([tool("amtool"), "check-config", str(config)], capture_output=True, check=False).returncode != 0
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yml").write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: up ==\n")
    prom = tmp_path / "prometheus.yml"
    prom.write_text(render("prometheus.yml.j2", {"observability_prometheus_rules_dir": str(rules)}))
    assert subprocess.run([tool("promtool"), "check", "config", str(prom)], capture_output=True, check=False).returncode != 0
