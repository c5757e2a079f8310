# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: cloud_region
short_description: Is a value a region name of AWS or of DigitalOcean Spaces
version_added: 0.4.0
description:
  - With O(provider=aws), true for an AWS region name such as C(eu-central-1) or C(us-gov-west-1)
    (area, direction and number), false for a typo such as C(eu-centrl-1) or C(eu-central).
  - With O(provider=spaces), true for a region DigitalOcean Spaces runs in, such as C(fra1).
  - Preflight checks use it, so an unknown region stops a run before any change instead of a
    backup failing at night.
author:
  - FreshTrack Pro operations (@freshtrack)
options:
  _input:
    description: The value.
    type: raw
    required: true
  provider:
    description: Whose region names.
    type: str
    choices: [aws, spaces]
    default: aws
"""

EXAMPLES = r"""
- name: The S3 bucket's region
  ansible.builtin.assert:
    that: stack_s3.region is freshtrack.deploy.cloud_region

- name: A Spaces region
  ansible.builtin.assert:
    that: backup_s3_region is freshtrack.deploy.cloud_region(provider='spaces')
"""

RETURN = r"""
_value:
  description: Whether the value is a region name of that provider.
  type: bool
"""

import re

_AWS_REGION = re.compile(
    r"^[a-z]{2}(-gov|-iso[a-z]?)?-(north|south|east|west|central|northeast|northwest|southeast|southwest)-[1-9]$")
# The regions DigitalOcean lists for Spaces (https://docs.digitalocean.com/products/spaces/details/availability/).
SPACES_REGIONS = ("ams3", "atl1", "blr1", "fra1", "lon1", "nyc3", "sfo2", "sfo3", "sgp1", "syd1", "tor1")


def cloud_region(value, provider="aws"):
    if not isinstance(value, str):
        return False
    if provider == "spaces":
        return value in SPACES_REGIONS
    if provider == "aws":
        return bool(_AWS_REGION.match(value))
    raise ValueError(f"cloud_region: provider must be aws or spaces, not {provider!r}")


class TestModule:
    def tests(self):
        return {"cloud_region": cloud_region}
