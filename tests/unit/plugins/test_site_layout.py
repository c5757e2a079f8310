"""The site_layout filter: the inventory's groups decide which host runs which part."""
from __future__ import annotations

import pytest

from ansible_collections.freshtrack.deploy.plugins.filter.site_firewall_rules import FilterModule as FirewallFilters
from ansible_collections.freshtrack.deploy.plugins.filter.site_scrape_targets import FilterModule as ScrapeFilters
from ansible_collections.freshtrack.deploy.plugins.filter.site_layout import FilterModule

site_layout = FilterModule().filters()["site_layout"]
GROUPS = {"lb": "freshtrack_lb", "app": "freshtrack_app", "db": "freshtrack_db", "monitoring": "freshtrack_monitoring"}
SPLIT = {"freshtrack": ["lb1", "app1", "app2", "db1"], "freshtrack_lb": ["lb1"], "freshtrack_app": ["app1", "app2"],
         "freshtrack_db": ["db1"], "freshtrack_monitoring": ["lb1"], "ungrouped": []}
ADDRESSES = {"lb1": {"freshtrack_private_address": "10.0.0.2"}, "app1": {"freshtrack_private_address": "10.0.0.3"},
             "app2": {"ansible_host": "10.0.0.4"}, "db1": {"freshtrack_private_address": "10.0.0.5", "ansible_host": "db.example"}}


def test_no_layout_group_is_the_one_host_layout():
    got = site_layout({"freshtrack": ["a", "b"], "ungrouped": []}, {}, "b", GROUPS)
    assert got["mode"] == "single" and got["problems"] == []
    assert got["parts"] == ["lb", "app", "db", "monitoring"]
    assert got["hosts"] == {part: ["b"] for part in GROUPS}


def test_empty_layout_groups_are_no_layout():
    groups = {"freshtrack": ["a"], "freshtrack_lb": [], "freshtrack_app": []}
    assert site_layout(groups, {}, "a", GROUPS)["mode"] == "single"


@pytest.mark.parametrize("host, parts", [("lb1", ["lb", "monitoring"]), ("app2", ["app"]), ("db1", ["db"])])
def test_split_layout_parts_per_host(host, parts):
    got = site_layout(SPLIT, ADDRESSES, host, GROUPS)
    assert got["mode"] == "split" and got["problems"] == []
    assert got["parts"] == parts
    assert got["hosts"]["app"] == ["app1", "app2"]


def test_addresses_private_then_ansible_host():
    got = site_layout(SPLIT, ADDRESSES, "lb1", GROUPS)
    assert got["addresses"] == {"lb": ["10.0.0.2"], "app": ["10.0.0.3", "10.0.0.4"], "db": ["10.0.0.5"],
                                "monitoring": ["10.0.0.2"]}


@pytest.mark.parametrize("change, problem", [
    ({"freshtrack_db": []}, "freshtrack_db (part db) lists no host"),
    ({"freshtrack_db": ["db1", "app1"]}, "lists 2 hosts (db1, app1): it takes exactly one"),
    ({"freshtrack_monitoring": []}, "freshtrack_monitoring (part monitoring) lists no host"),
    ({"freshtrack": ["lb1", "app1", "app2", "db1", "spare"]}, "spare in freshtrack but in none of"),
    ({"freshtrack": ["lb1", "app1", "db1"]}, "app2 in freshtrack_app but not in freshtrack"),
])
def test_problems_name_the_group_and_hosts(change, problem):
    got = site_layout(dict(SPLIT, **change), ADDRESSES, "lb1", GROUPS)
    assert any(problem in sentence for sentence in got["problems"]), got["problems"]


def test_a_split_layout_needs_addresses():
    got = site_layout(SPLIT, dict(ADDRESSES, app2={"ansible_host": "app2.internal"}), "lb1", GROUPS)
    assert got["problems"] == ["app2: freshtrack_private_address must be an IP address in a split layout (the firewall "
                               "admits the other hosts by address; got 'app2.internal')"]


def test_layout_groups_must_name_every_part():
    got = site_layout(SPLIT, ADDRESSES, "lb1", {k: v for k, v in GROUPS.items() if k != "monitoring"})
    assert got["problems"] == ["the layout groups name no group for monitoring"] and got["mode"] == "single"


site_firewall_rules = FirewallFilters().filters()["site_firewall_rules"]
PORTS = {"app": {"app": 8080}, "db": {"pgbouncer": 6432, "redis": 6379}, "any": {"node_exporter": 9100}}


def test_firewall_admits_each_port_from_its_clients_only():
    app1 = site_firewall_rules(site_layout(SPLIT, ADDRESSES, "app1", GROUPS), PORTS)
    assert app1 == [{"port": 8080, "proto": "tcp", "from": "10.0.0.2", "comment": "freshtrack app from lb1"},
                    {"port": 9100, "proto": "tcp", "from": "10.0.0.2", "comment": "freshtrack node_exporter from lb1"}]
    db1 = site_firewall_rules(site_layout(SPLIT, ADDRESSES, "db1", GROUPS), PORTS)
    assert [(rule["port"], rule["from"]) for rule in db1] == [(6432, "10.0.0.3"), (6432, "10.0.0.4"),
                                                              (6379, "10.0.0.3"), (6379, "10.0.0.4"), (9100, "10.0.0.2")]
    # The monitoring host scrapes its own exporters on Docker's networks: no rule from itself.
    assert site_firewall_rules(site_layout(SPLIT, ADDRESSES, "lb1", GROUPS), PORTS) == []


def test_no_rules_in_the_one_host_layout():
    assert site_firewall_rules(site_layout({"freshtrack": ["a"]}, {}, "a", GROUPS), PORTS) == []


site_scrape_targets = ScrapeFilters().filters()["site_scrape_targets"]
JOBS = {"any": {"node": 9100}, "db": {"postgres": 9187}, "app": {"federate": 9090}}


def test_the_monitoring_host_scrapes_every_other_host():
    got = site_scrape_targets(site_layout(SPLIT, ADDRESSES, "lb1", GROUPS), JOBS)
    assert got == [{"job": "node", "host": "app1", "address": "10.0.0.3:9100"},
                   {"job": "node", "host": "app2", "address": "10.0.0.4:9100"},
                   {"job": "node", "host": "db1", "address": "10.0.0.5:9100"},
                   {"job": "federate", "host": "app1", "address": "10.0.0.3:9090"},
                   {"job": "federate", "host": "app2", "address": "10.0.0.4:9090"},
                   {"job": "postgres", "host": "db1", "address": "10.0.0.5:9187"}]


def test_no_remote_targets_off_the_monitoring_host_or_on_one_host():
    assert site_scrape_targets(site_layout(SPLIT, ADDRESSES, "app1", GROUPS), JOBS) == []
    assert site_scrape_targets(site_layout({"freshtrack": ["a"]}, {}, "a", GROUPS), JOBS) == []
