"""docker-bench-security's output -> figures: section 2's WARN checks, section 5's findings per container.

A section 5 check that warns lists the containers it found ("[WARN]      * <what>: <container>"); each
such line is one finding of that container. AppArmor and SELinux checks are left out (neither runs
inside the host containers), as are checks that warn about the host rather than a container.

Usage: python3 scripts/lib/cis_report.py BENCH_OUTPUT FIGURES_JSON
"""
from __future__ import annotations

import collections
import json
import re
import sys

CHECK = re.compile(r"^\[(?P<level>WARN|PASS|INFO|NOTE)\] (?P<id>\d+\.\d+) - (?P<desc>.*)$")
DETAIL = re.compile(r"^\[WARN\]\s+\* (?P<what>.*?)(?::| in) (?P<container>\S+)$")
LEFT_OUT = re.compile(r"AppArmor|SELinux", re.IGNORECASE)


def parse(text: str) -> dict:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    daemon_warns, host_warns = [], []
    per_container: dict = collections.defaultdict(list)
    current = None
    for line in text.splitlines():
        line = line.rstrip()
        check = CHECK.match(line)
        if check:
            current = check.groupdict()
            if current["level"] == "WARN" and current["id"].startswith("2."):
                daemon_warns.append(f"{current['id']} {current['desc']}")
            if current["level"] == "WARN" and current["id"].startswith("5.") and not LEFT_OUT.search(current["desc"]):
                host_warns.append(current)
            continue
        detail = DETAIL.match(line)
        if detail and current and current["id"].startswith("5.") and not LEFT_OUT.search(current["desc"]):
            per_container[detail["container"]].append(f"{current['id']} {detail['what']}")
    # Checks that warned without naming a container are about the host (5.1, swarm mode).
    named = {finding.split()[0] for findings in per_container.values() for finding in findings}
    host_level = [f"{c['id']} {c['desc']}" for c in host_warns if c["id"] not in named]
    containers = dict(sorted(per_container.items()))
    return {
        "section_2_warn": daemon_warns,
        "section_5_host_level_warn": host_level,
        "section_5_findings_per_container": containers,
        "section_5_findings": sum(len(v) for v in containers.values()),
        "section_5_most_per_container": max((len(v) for v in containers.values()), default=0),
        # A check lists a container once per port it publishes: the distinct checks it failed.
        "section_5_checks_per_container": {c: len({f.split()[0] for f in v}) for c, v in containers.items()},
    }


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as source:
        figures = parse(source.read())
    with open(sys.argv[2], "w", encoding="utf-8") as target:
        json.dump(figures, target, indent=2)
    print(f"section 2 (daemon): {len(figures['section_2_warn'])} WARN")
    for warn in figures["section_2_warn"]:
        print(f"  {warn}")
    print(f"section 5 (containers, less AppArmor/SELinux): {figures['section_5_findings']} findings, "
          f"at most {figures['section_5_most_per_container']} per container")
    for container, findings in figures["section_5_findings_per_container"].items():
        checks = figures["section_5_checks_per_container"][container]
        print(f"  {container:32s} {len(findings)} findings, {checks} checks  {'; '.join(sorted(set(findings)))}")
    for warn in figures["section_5_host_level_warn"]:
        print(f"  (host) {warn}")


if __name__ == "__main__":
    main()
