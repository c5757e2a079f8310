"""The example inventories' layouts, as the site_layout filter reads them: sound, and what they say."""
from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

from ansible_collections.freshtrack.deploy.plugins.filter.site_layout import FilterModule

ROOT = pathlib.Path(__file__).resolve().parents[2]
GROUPS = {"lb": "freshtrack_lb", "app": "freshtrack_app", "db": "freshtrack_db", "monitoring": "freshtrack_monitoring"}
site_layout = FilterModule().filters()["site_layout"]


def inventory(name):
    listed = json.loads(subprocess.run(["ansible-inventory", "-i", str(ROOT / "inventories" / name), "--list"],
                                       check=True, capture_output=True, text=True).stdout)
    hostvars = listed["_meta"]["hostvars"]
    groups = {}

    def hosts_of(group):
        entry = listed.get(group, {})
        return entry.get("hosts", []) + [h for child in entry.get("children", []) for h in hosts_of(child)]
    for group in listed:
        if group != "_meta":
            groups[group] = list(dict.fromkeys(hosts_of(group)))
    return groups, hostvars


@pytest.mark.parametrize("name", ["prod", "staging"])
def test_one_host_inventories(name):
    groups, hostvars = inventory(name)
    for host in groups["freshtrack"]:
        layout = site_layout(groups, hostvars, host, GROUPS)
        assert layout["mode"] == "single" and layout["problems"] == []


def test_the_split_example():
    groups, hostvars = inventory("split")
    layouts = {host: site_layout(groups, hostvars, host, GROUPS) for host in groups["freshtrack"]}
    assert {host: layout["parts"] for host, layout in layouts.items()} == {
        "freshtrack-lb-1": ["lb", "monitoring"], "freshtrack-app-1": ["app"], "freshtrack-app-2": ["app"],
        "freshtrack-db-1": ["db"]}
    assert all(layout["mode"] == "split" and layout["problems"] == [] for layout in layouts.values())
    assert layouts["freshtrack-lb-1"]["addresses"]["app"] == ["10.0.1.11", "10.0.1.12"]
