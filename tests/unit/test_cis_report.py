"""The CIS benchmark's reader (scripts/lib/cis_report.py): section 5's findings counted per container
(AppArmor and SELinux left out, host-level warnings apart), section 2's WARN checks listed."""
from __future__ import annotations

import importlib.util
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "lib" / "cis_report.py"
SPEC = importlib.util.spec_from_file_location("cis_report", SCRIPT)
cis_report = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(cis_report)

OUTPUT = """\x1b[1;33m[WARN]\x1b[0m 2.10 - Enable user namespace support (Automated)
[PASS] 2.11 - Ensure that the default cgroup usage has been confirmed (Automated)
[WARN] 2.12 - Ensure that authorization for Docker client commands is enabled (Scored)
[INFO] 5 - Container Runtime
[WARN] 5.1 - Ensure swarm mode is not Enabled, if not needed (Automated)
[WARN] 5.2 - Ensure that, if applicable, an AppArmor Profile is enabled (Automated)
[WARN]      * No AppArmorProfile Found: freshtrack-caddy
[WARN] 5.3 - Ensure that, if applicable, SELinux security options are set (Automated)
[WARN]      * No SecurityOptions Found: freshtrack-caddy
[WARN] 5.13 - Ensure that the container's root filesystem is mounted as read only (Automated)
[WARN]      * Container running with root FS mounted R/W: freshtrack-postgres
[WARN]      * Container running with root FS mounted R/W: freshtrack-redis
[WARN] 5.14 - Ensure that incoming container traffic is bound to a specific host interface (Automated)
[WARN]      * Port being bound to wildcard IP: 0.0.0.0 in freshtrack-caddy
[PASS] 5.26 - Ensure that container health is checked at runtime (Automated)
"""


def test_findings_per_container_without_apparmor_and_selinux():
    figures = cis_report.parse(OUTPUT)
    assert figures["section_5_findings_per_container"] == {
        "freshtrack-caddy": ["5.14 Port being bound to wildcard IP: 0.0.0.0"],
        "freshtrack-postgres": ["5.13 Container running with root FS mounted R/W"],
        "freshtrack-redis": ["5.13 Container running with root FS mounted R/W"],
    }
    assert figures["section_5_findings"] == 3
    assert figures["section_5_most_per_container"] == 1
    assert figures["section_5_checks_per_container"] == {"freshtrack-caddy": 1, "freshtrack-postgres": 1, "freshtrack-redis": 1}
    assert figures["section_5_host_level_warn"] == ["5.1 Ensure swarm mode is not Enabled, if not needed (Automated)"]


def test_daemon_warnings():
    assert cis_report.parse(OUTPUT)["section_2_warn"] == [
        "2.10 Enable user namespace support (Automated)",
        "2.12 Ensure that authorization for Docker client commands is enabled (Scored)",
    ]
