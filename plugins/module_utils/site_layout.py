# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which host runs which part of a site (the inventory's layout groups), and the firewall rules
that follow: pure functions behind the site_layout, site_firewall_rules and site_scrape_targets filters."""
from __future__ import annotations

import ipaddress

PARTS = ("lb", "app", "db", "monitoring")
# How many hosts a part may have in a split layout: (at least, at most).
COUNTS = {"lb": (1, None), "app": (1, None), "db": (1, 1), "monitoring": (1, 1)}


def _address(hostvars, name):
    try:
        variables = hostvars[name]
    except KeyError:
        return name
    for key in ("freshtrack_private_address", "ansible_host"):
        value = variables.get(key) if hasattr(variables, "get") else None
        if value:
            return str(value)
    return name


def _is_ip(value):
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def plan(groups, hostvars, host, layout_groups, site_group="freshtrack"):
    """The pure logic: groups and addresses in, the layout out."""
    missing = [part for part in PARTS if not layout_groups.get(part)]
    if missing:
        # Told as a problem, not raised: the argument spec then names the variable and what it lacks.
        return {"mode": "single", "parts": list(PARTS), "address": _address(hostvars, host),
                "hosts": {part: [host] for part in PARTS}, "addresses": {part: [_address(hostvars, host)] for part in PARTS},
                "problems": ["the layout groups name no group for %s" % ", ".join(missing)]}
    site = list(groups.get(site_group, []))
    placed = {part: list(groups.get(layout_groups[part], [])) for part in PARTS}
    if not any(placed.values()):
        return {"mode": "single", "parts": list(PARTS), "address": _address(hostvars, host),
                "hosts": {part: [host] for part in PARTS},
                "addresses": {part: [_address(hostvars, host)] for part in PARTS}, "problems": []}

    problems = []
    for part in PARTS:
        low, high = COUNTS[part]
        count = len(placed[part])
        if count < low:
            problems.append("the group %s (part %s) lists no host: a split layout needs one" % (layout_groups[part], part))
        elif high is not None and count > high:
            problems.append("the group %s (part %s) lists %d hosts (%s): it takes exactly one"
                            % (layout_groups[part], part, count, ", ".join(placed[part])))
        outside = [name for name in placed[part] if name not in site]
        if outside:
            problems.append("%s in %s but not in %s: every host of a site is in its site group"
                            % (", ".join(outside), layout_groups[part], site_group))
    anywhere = {name for names in placed.values() for name in names}
    idle = [name for name in site if name not in anywhere]
    if idle:
        problems.append("%s in %s but in none of %s: a split layout places every host"
                        % (", ".join(idle), site_group, ", ".join(layout_groups[part] for part in PARTS)))
    addresses = {part: [_address(hostvars, name) for name in placed[part]] for part in PARTS}
    for name in sorted(anywhere):
        address = _address(hostvars, name)
        if not _is_ip(address):
            problems.append("%s: freshtrack_private_address must be an IP address in a split layout (the firewall "
                            "admits the other hosts by address; got '%s')" % (name, address))
    return {"mode": "split", "parts": [part for part in PARTS if host in placed[part]], "address": _address(hostvars, host),
            "hosts": placed,
            "addresses": addresses, "problems": problems}


# Which part's hosts connect to a part's ports (the firewall admits only them). "any" is every host
# of the site: its metrics ports, scraped by the monitoring host's Prometheus.
CLIENTS = {"app": "lb", "db": "app", "any": "monitoring"}


def firewall_rules(layout, ports):
    """ufw rules (hardening's form) admitting each port of this host's parts from their clients' addresses.

    ports: part -> {service name: port}; part "any" holds the ports every host serves (its metrics).
    Nothing in a single layout (nothing is reached from another host).
    """
    if layout.get("mode") != "split":
        return []
    rules = []
    for part in list(layout["parts"]) + ["any"]:
        client = CLIENTS.get(part)
        if client is None:
            continue
        for service, port in sorted((ports.get(part) or {}).items()):
            for name, address in zip(layout["hosts"][client], layout["addresses"][client]):
                if address == layout["address"]:
                    continue  # the host itself: its own containers reach theirs on Docker's networks
                rules.append({"port": int(port), "proto": "tcp", "from": address,
                              "comment": "freshtrack %s from %s" % (service, name)})
    return rules


def scrape_targets(layout, ports):
    """The monitoring host's Prometheus targets on the other hosts of a split site.

    ports: part (or "any", every host) -> {job: port}. Returns [{job, host, address}] (address is
    host:port), by job in the order given, then by host; none on another host or in a single layout.
    """
    if layout.get("mode") != "split" or "monitoring" not in layout["parts"]:
        return []
    everyone = []
    for part in PARTS:
        for name, address in zip(layout["hosts"][part], layout["addresses"][part]):
            if (name, address) not in everyone:
                everyone.append((name, address))
    targets = []
    for part in ["any"] + list(PARTS):
        hosts = everyone if part == "any" else list(zip(layout["hosts"][part], layout["addresses"][part]))
        for job, port in (ports.get(part) or {}).items():
            for name, address in hosts:
                if address != layout["address"]:
                    targets.append({"job": job, "host": name, "address": "%s:%d" % (address, int(port))})
    return targets
