"""The alert rules (roles/observability/files/prometheus/rules/) pass `promtool check rules`, and
`promtool test rules` runs a case per alert: it fires on a synthetic bad series and stays silent
on a healthy one (tests/prometheus/freshtrack.rules.test.yml). promtool is Debian's (prometheus 2.42)."""
from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "roles" / "observability" / "files" / "prometheus" / "rules" / "freshtrack.rules.yml"
TESTS = ROOT / "tests" / "prometheus" / "freshtrack.rules.test.yml"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (apt-get install prometheus)")


def alerts():
    return sorted({rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
                   for rule in group["rules"] if "alert" in rule})


def test_promtool_check_rules():
    out = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"SUCCESS: \d+ rules found", out.stdout)


def test_every_alert_has_severity_summary_and_runbook():
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
                assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_every_alert_fires_and_stays_silent_in_promtool_tests():
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    fired, silent = set(), set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    assert set(alerts()) <= fired, f"never shown firing: {set(alerts()) - fired}"
    # The dead-man's switch always fires: it has no silent case by design.
    assert set(alerts()) - {"MonitoringPipelineDead"} <= silent, f"never shown silent: {set(alerts()) - silent}"


def test_promtool_test_rules():
    out = subprocess.run([PROMTOOL, "test", "rules", str(TESTS)], capture_output=True, text=True, check=False,
                         cwd=TESTS.parent, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "SUCCESS" in out.stdout
