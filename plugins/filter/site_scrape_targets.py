# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: site_scrape_targets
short_description: The monitoring host's Prometheus targets on the other hosts of a split site
version_added: 0.4.0
description:
  - For the monitoring host of a split site, one target per job and other host, from the jobs each part's
    hosts serve on their private addresses (C(any) for every host, such as node-exporter).
  - Nothing on another host or in a one-host layout, where Prometheus reaches everything on Docker's networks.
author:
  - FreshTrack Pro operations (@freshtrack)
options:
  _input:
    description: The host's layout (P(freshtrack.deploy.site_layout#filter)).
    type: dict
    required: true
  ports:
    description: Part name (or C(any), every host) to a mapping of job name to port.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: The node-exporters of the other hosts
  ansible.builtin.debug:
    msg: "{{ freshtrack_layout | freshtrack.deploy.site_scrape_targets({'any': {'node': 9100}}) }}"
"""

RETURN = r"""
_value:
  description: The targets, each with its job, host (inventory name) and address (address:port).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.freshtrack.deploy.plugins.module_utils.site_layout import scrape_targets


def site_scrape_targets(layout, ports):
    if not isinstance(layout, dict) or not isinstance(ports, dict):
        raise AnsibleFilterError("site_scrape_targets: expects the layout and the ports as dicts")
    return scrape_targets(layout, ports)


class FilterModule:
    def filters(self):
        return {"site_scrape_targets": site_scrape_targets}
