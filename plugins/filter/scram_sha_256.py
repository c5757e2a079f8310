# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: scram_sha_256
short_description: A password's SCRAM-SHA-256 secret as PostgreSQL stores it
version_added: 0.1.0
description:
  - Returns C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>), the form of
    C(pg_authid.rolpassword) and of a PgBouncer userlist entry.
  - The salt is random (16 bytes, as PostgreSQL's own), so each call gives another secret and equal
    passwords never give equal secrets. Make a secret once and keep it (the secrets role's C(scram)
    entry point does, for PostgreSQL and PgBouncer); the test P(freshtrack.deploy.scram_secret_of#test)
    tells whether a kept secret still belongs to its password.
  - Use it with C(no_log) on the task; the secret is as sensitive as a password hash.
author:
  - FreshTrack Pro operations (@freshtrack)
options:
  _input:
    description: The password.
    type: str
    required: true
  iterations:
    description: PBKDF2 iterations (PostgreSQL's default is 4096).
    type: int
    default: 4096
"""

EXAMPLES = r"""
- name: A SCRAM secret for PostgreSQL, made once (a second run keeps the first one)
  ansible.builtin.copy:
    dest: /opt/freshtrack/secrets/postgres_password_scram
    content: "{{ app_password | freshtrack.deploy.scram_sha_256 }}"
    force: false
    mode: "0400"
  no_log: true
"""

RETURN = r"""
_value:
  description: The SCRAM-SHA-256 secret.
  type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.freshtrack.deploy.plugins.module_utils.scram import scram_sha_256


def _scram_sha_256(password, iterations=4096):
    try:
        return scram_sha_256(password, iterations=iterations)
    except ValueError as error:
        raise AnsibleFilterError("scram_sha_256: %s" % error) from None


class FilterModule:
    def filters(self):
        return {"scram_sha_256": _scram_sha_256}
