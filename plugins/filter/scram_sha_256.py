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
  - The salt is derived from the password unless given, so the same password always gives the
    same secret. PostgreSQL and PgBouncer then hold identical secrets, which PgBouncer needs to log
    in to PostgreSQL on a client's behalf, and re-runs render identical files.
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
- name: Userlist line for PgBouncer
  ansible.builtin.copy:
    dest: /opt/freshtrack/secrets/pgbouncer_userlist
    content: '"freshtrack" "{{ app_password | freshtrack.deploy.scram_sha_256 }}"'
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
