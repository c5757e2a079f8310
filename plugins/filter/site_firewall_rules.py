# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: site_firewall_rules
short_description: The firewall rules of a split site's host, from its layout
version_added: 0.4.0
description:
  - For each part the host runs, admits each of that part's ports from the hosts of the part that uses
    it (the app hosts' port from the load balancers, the database host's from the app hosts), by their
    addresses. Rules in the hardening role's form (port, proto, from, comment).
  - The ports of the part C(any) are every host's (its metrics), admitted from the monitoring host (not on
    the monitoring host itself, whose Prometheus reaches its own exporters on Docker's networks).
  - Nothing in a one-host layout, where nothing is reached from another host.
author:
  - FreshTrack Pro operations (@freshtrack)
options:
  _input:
    description: The host's layout (P(freshtrack.deploy.site_layout#filter)).
    type: dict
    required: true
  ports:
    description: Part name (or C(any), every host) to a mapping of service name to port.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: The rules of this host
  ansible.builtin.debug:
    msg: "{{ freshtrack_layout | freshtrack.deploy.site_firewall_rules({'db': {'pgbouncer': 6432}}) }}"
"""

RETURN = r"""
_value:
  description: The rules.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.freshtrack.deploy.plugins.module_utils.site_layout import firewall_rules


def site_firewall_rules(layout, ports):
    if not isinstance(layout, dict) or not isinstance(ports, dict):
        raise AnsibleFilterError("site_firewall_rules: expects the layout and the ports as dicts")
    return firewall_rules(layout, ports)


class FilterModule:
    def filters(self):
        return {"site_firewall_rules": site_firewall_rules}
