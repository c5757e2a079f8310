# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: scram_secret_of
short_description: Is a SCRAM-SHA-256 secret the one of a password
version_added: 0.3.0
description:
  - True when the input is a C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>) secret
    (PostgreSQL's C(pg_authid.rolpassword) form) made from the given password, whatever its salt.
  - False for anything else, also for an empty or missing secret, so a kept secret is replaced only
    when its password changed or it is not a secret at all.
author:
  - FreshTrack Pro operations (@freshtrack)
options:
  _input:
    description: The stored secret.
    type: str
    required: true
  password:
    description: The password it should belong to.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Replace the verifier only when the password changed
  ansible.builtin.copy:
    dest: /opt/freshtrack/secrets/postgres_password_scram
    content: "{{ password | freshtrack.deploy.scram_sha_256 }}"
    mode: "0400"
  when: not (kept_secret is freshtrack.deploy.scram_secret_of(password))
  no_log: true
"""

RETURN = r"""
_value:
  description: Whether the secret belongs to the password.
  type: bool
"""

from ansible_collections.freshtrack.deploy.plugins.module_utils.scram import verify


def scram_secret_of(secret, password):
    return verify(password, secret)


class TestModule:
    def tests(self):
        return {"scram_secret_of": scram_secret_of}
