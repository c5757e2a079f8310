# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: ip_address
short_description: Is a value an IPv4 or IPv6 address (or, with network=true, an address or CIDR network)
version_added: 0.3.0
description:
  - True for a literal address such as C(127.0.0.1) or C(::1), by Python's C(ipaddress) module, the
    rule Docker and ufw apply when they are given one. False for host names such as C(localhost).
  - With O(network=true), also true for a network in CIDR notation such as C(10.0.0.0/8) (host bits
    may be set, as ufw and fail2ban accept them), false for a prefix out of range such as C(/33).
  - Needs no Python library beyond the standard one (C(ansible.utils.ipaddr) needs C(netaddr)).
author:
  - FreshTrack Pro operations (@freshtrack)
options:
  _input:
    description: The value.
    type: raw
    required: true
  network:
    description: Also accept a CIDR network.
    type: bool
    default: false
  strict:
    description:
      - With O(network=true), only a CIDR network without host bits, such as C(172.23.255.0/24) and not
        C(172.23.255.5/24), which is the rule Docker applies to a network's subnet.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Published ports bind to an address, not a name
  ansible.builtin.assert:
    that: observability_ui_address is freshtrack.deploy.ip_address
    fail_msg: "observability_ui_address: an IP address such as 127.0.0.1"

- name: A Docker network's subnet
  ansible.builtin.assert:
    that: stack_edge_subnet is freshtrack.deploy.ip_address(network=true, strict=true)

- name: A firewall source is an address or a network
  ansible.builtin.assert:
    that: rule.from is freshtrack.deploy.ip_address(network=true)
"""

RETURN = r"""
_value:
  description: Whether the value is an address (or a network, with O(network=true)).
  type: bool
"""

import ipaddress


def ip_address(value, network=False, strict=False):
    if not isinstance(value, str) or value != value.strip() or not value:
        return False
    try:
        if network and "/" in value:
            ipaddress.ip_network(value, strict=strict)
        elif network and strict:
            return False
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class TestModule:
    def tests(self):
        return {"ip_address": ip_address}
