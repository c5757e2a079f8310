# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: site_layout
short_description: Which host runs which part of a FreshTrack Pro site, from the inventory's groups
version_added: 0.4.0
description:
  - A site has four parts, C(lb) (Caddy, the TLS certificates), C(app) (backend and worker), C(db)
    (PostgreSQL, PgBouncer, Redis, MinIO, the backups) and C(monitoring) (Prometheus and its company).
    An inventory group per part places them on hosts (C(freshtrack_layout_groups) of roles/freshtrack).
  - When none of those groups lists a host, the layout is C(single), and each host of the site group runs
    every part, a site of its own (the one-host layout). Once any of them lists a host, the layout is
    C(split), and the site group's hosts together are one site, each running the parts of its groups.
  - Each host's address is its C(freshtrack_private_address), else its C(ansible_host), else its
    inventory name; the others connect to it and the firewall admits them from it.
  - Returns the plan, and what is wrong with it in C(problems) (empty when the layout is sound), so a
    playbook asserts one list.
author:
  - FreshTrack Pro operations (@freshtrack)
options:
  _input:
    description: Ansible's C(groups).
    type: dict
    required: true
  hostvars:
    description: Ansible's C(hostvars) (for each host's address).
    type: dict
    required: true
  host:
    description: The host asking (C(inventory_hostname)).
    type: str
    required: true
  layout_groups:
    description: Part name to inventory group name.
    type: dict
    required: true
  site_group:
    description: The group of every host of the site.
    type: str
    default: freshtrack
"""

EXAMPLES = r"""
- name: This host's parts
  ansible.builtin.debug:
    msg: "{{ (groups | freshtrack.deploy.site_layout(hostvars, inventory_hostname, freshtrack_layout_groups)).parts }}"
"""

RETURN = r"""
_value:
  description: The layout.
  type: dict
  contains:
    mode:
      description: C(single) or C(split).
      type: str
    parts:
      description: The parts the asking host runs.
      type: list
      elements: str
    address:
      description: The asking host's address.
      type: str
    hosts:
      description: Part name to the inventory names of the hosts running it (in a single layout, the asking host).
      type: dict
    addresses:
      description: Part name to those hosts' addresses, in the same order.
      type: dict
    problems:
      description: What makes the layout unusable, one sentence each.
      type: list
      elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.freshtrack.deploy.plugins.module_utils.site_layout import plan


def site_layout(groups, hostvars, host, layout_groups, site_group="freshtrack"):
    if not isinstance(groups, dict) or not isinstance(layout_groups, dict):
        raise AnsibleFilterError("site_layout: expects groups and layout_groups as dicts")
    try:
        return plan(groups, hostvars, host, layout_groups, site_group)
    except ValueError as error:
        raise AnsibleFilterError("site_layout: %s" % error) from None


class FilterModule:
    def filters(self):
        return {"site_layout": site_layout}
