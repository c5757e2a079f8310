"""Parsing and status logic of the cert_expiry module, with a frozen clock."""
from __future__ import annotations

import datetime
import os
import sys

import pytest
from freezegun import freeze_time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from certmaker import make_cert, pem  # noqa: E402

from ansible_collections.freshtrack.deploy.plugins.module_utils import cert_expiry as ce  # noqa: E402

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SETTINGS = {"warning_days": 14, "critical_days": 7, "renewal_fraction": 0.25, "timeout": 1}


def cert(days_before=10, days_after=80, **kwargs):
    return make_cert("app.example.com", not_before=T0 - datetime.timedelta(days=days_before),
                     not_after=T0 + datetime.timedelta(days=days_after), sans=("app.example.com",), **kwargs)[0]


def test_describe_dates_lifetime_and_key():
    info = ce.describe(cert(10, 80, key_kind="rsa"), T0)
    assert info["not_before"] == "2026-11-13T12:00:00Z"
    assert info["not_after"] == "2027-02-11T12:00:00Z"
    assert info["seconds_remaining"] == 80 * 86400
    assert info["days_remaining"] == 80.0
    assert info["lifetime_days"] == 90.0
    assert info["lifetime_fraction_remaining"] == round(80 / 90, 4)
    assert (info["key_type"], info["key_size"]) == ("RSA", 2048)
    assert info["signature_algorithm"] == "RSA-SHA256"
    assert info["sans"] == ["app.example.com"] and info["common_name"] == "app.example.com"
    assert info["self_signed"] is True


@pytest.mark.parametrize("days_before, days_after, expected", [
    (10, 80, "ok"),
    (70, 20, "renewal_overdue"),    # 20 of 90 days left: 22 % < 25 %, the renewal should have happened
    (80, 10, "warning"),
    (85, 5, "critical"),
    (90, 0, "expired"),             # not_after is now: expired
    (100, -10, "expired"),
    (-1, 89, "not_yet_valid"),
])
def test_classify_by_dates(days_before, days_after, expected):
    info = ce.describe(cert(days_before, days_after), T0)
    status, reason = ce.classify(info, T0, 14, 7, 0.25)
    assert status == expected, reason


def test_47_day_certificates_are_not_flagged_by_fixed_days_alone():
    # A 47-day certificate with 20 days left is fine; a day-threshold of 30 would call it a problem.
    info = ce.describe(cert(27, 20), T0)
    assert ce.classify(info, T0, 14, 7, 0.25)[0] == "ok"
    info = ce.describe(cert(37, 10), T0)
    assert ce.classify(info, T0, 14, 7, 0.25)[0] == "warning"


def test_invalid_chain_or_name_outranks_days_but_not_expiry():
    info = ce.describe(cert(10, 80), T0)
    assert ce.classify(info, T0, 14, 7, 0.25, chain_verified=False)[0] == "invalid"
    assert ce.classify(info, T0, 14, 7, 0.25, hostname_match=False)[0] == "invalid"
    expired = ce.describe(cert(100, -1), T0)
    assert ce.classify(expired, T0, 14, 7, 0.25, chain_verified=False)[0] == "expired"


@pytest.mark.parametrize("name, sans, expected", [
    ("app.example.com", ["app.example.com"], True),
    ("APP.example.com.", ["app.example.com"], True),
    ("api.example.com", ["*.example.com"], True),
    ("a.b.example.com", ["*.example.com"], False),
    ("example.com", ["*.example.com"], False),
    ("other.com", ["app.example.com"], False),
    ("127.0.0.1", ["127.0.0.1"], True),
    ("::1", ["::1"], True),
    ("127.0.0.1", ["localhost"], False),
    (None, ["x"], None),
])
def test_hostname_matching(name, sans, expected):
    assert ce.hostname_matches(name, sans) is expected


def test_common_name_only_counts_without_sans():
    assert ce.hostname_matches("legacy.example.com", [], "legacy.example.com") is True
    assert ce.hostname_matches("legacy.example.com", ["other.example.com"], "legacy.example.com") is False


def test_worst_and_fail_on():
    assert ce.worst(["ok", "warning", "renewal_overdue"]) == "warning"
    assert ce.worst([]) == "ok"
    assert ce.should_fail(["ok", "warning"], "warning")
    assert not ce.should_fail(["ok", "warning"], "critical")
    assert ce.should_fail(["unreachable"], "critical")
    assert not ce.should_fail(["expired"], "never")


@freeze_time("2026-11-23 12:00:00")
def test_file_check_with_chain_and_prometheus_text(tmp_path):
    ca, ca_key = make_cert("Test CA", ca=True, not_before=T0 - datetime.timedelta(days=1000),
                           not_after=T0 + datetime.timedelta(days=30))
    leaf, _leaf_key = make_cert("app.example.com", issuer=ca, issuer_key=ca_key, sans=("app.example.com",),
                                not_before=T0 - datetime.timedelta(days=10), not_after=T0 + datetime.timedelta(days=80))
    path = tmp_path / "app.crt"
    path.write_bytes(pem(leaf, ca))
    (tmp_path / "broken.pem").write_text("not a certificate")
    files = ce.pem_files([str(tmp_path)])
    assert [os.path.basename(f) for f in files] == ["app.crt", "broken.pem"]
    results = [ce.check_file(f, SETTINGS, lambda: T0) for f in files]
    good, broken = results
    assert good["status"] == "ok" and good["kind"] == "file"
    assert good["chain_earliest_not_after"] == "2026-12-23T12:00:00Z"  # the CA expires first
    assert len(good["chain"]) == 2
    assert broken["status"] == "unreachable" and "ValueError" in broken["error"]

    text = ce.prometheus_text(results, T0.timestamp())
    assert 'freshtrack_cert_not_after_timestamp_seconds{target="%s"} %d' % (
        path, (T0 + datetime.timedelta(days=80)).timestamp()) in text
    assert 'freshtrack_cert_status{target="%s",status="ok"} 1' % path in text
    assert 'freshtrack_cert_status{target="%s",status="unreachable"} 1' % (tmp_path / "broken.pem") in text
    assert "freshtrack_cert_lifetime_remaining_ratio" in text


def test_write_atomically_reports_change(tmp_path):
    target = tmp_path / "certs.prom"
    assert ce.write_atomically(str(target), "a 1\n")
    assert not ce.write_atomically(str(target), "a 1\n")
    assert ce.write_atomically(str(target), "a 2\n")
    assert target.read_text() == "a 2\n" and oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["certs.prom"]


def test_endpoint_labels():
    assert ce.endpoint_label({"host": "::1", "port": 443}) == "[::1]:443"
    assert ce.endpoint_label({"host": "10.0.0.1", "port": 443, "server_name": "app.example.com"}) == \
        "10.0.0.1:443 (app.example.com)"
