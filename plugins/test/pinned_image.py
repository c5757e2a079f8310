# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: pinned_image
short_description: Is an image reference pinned to a version
version_added: 0.1.0
description:
  - True for C(name:tag), C(name@sha256:<digest>) or both, where the tag is not C(latest) and
    names a version, so the same reference always means the same software.
  - False for a reference without a tag or digest (which means C(latest)), for C(:latest), and for
    references Docker would refuse.
author:
  - FreshTrack Pro operations (@freshtrack)
options:
  _input:
    description: An image reference, for example C(postgres:15.15-bookworm).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse floating tags
  ansible.builtin.assert:
    that: stack_backend_image is freshtrack.deploy.pinned_image
    fail_msg: "stack_backend_image: pin a version (name:tag or name@sha256:...), never :latest"
"""

RETURN = r"""
_value:
  description: Whether the reference is pinned.
  type: bool
"""

import re

# registry[:port]/path/name, then an optional :tag, then an optional @sha256:digest.
_REFERENCE = re.compile(
    r"^(?P<name>(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@sha256:(?P<digest>[0-9a-f]{64}))?$")


def pinned_image(reference):
    if not isinstance(reference, str):
        return False
    match = _REFERENCE.match(reference)
    if not match:
        return False
    tag, digest = match.group("tag"), match.group("digest")
    if digest:
        return True
    return bool(tag) and tag.lower() != "latest"


class TestModule:
    def tests(self):
        return {"pinned_image": pinned_image}
