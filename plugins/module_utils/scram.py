# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCRAM-SHA-256 secrets in PostgreSQL's stored format (RFC 5802 / RFC 7677).

Each secret gets a random salt, as PostgreSQL gives one: equal passwords never give equal
secrets. PgBouncer can log in to PostgreSQL on a client's behalf only when its userlist holds
exactly the secret PostgreSQL stores, so a secret is made once and kept (the secrets role's `scram`
entry point): `verify` tells whether a kept secret still belongs to its password.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

PREFIX = "SCRAM-SHA-256$"
DEFAULT_ITERATIONS = 4096  # PostgreSQL's scram_iterations default
SALT_BYTES = 16  # as PostgreSQL's own (SCRAM_DEFAULT_SALT_LEN)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def scram_sha_256(password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Return 'SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>' for a password."""
    if not isinstance(password, str) or not password:
        raise ValueError("the password must be a non-empty string")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 4096:
        raise ValueError("iterations must be an integer >= 4096")
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    # PostgreSQL prepares the password with SASLprep; printable ASCII passes through unchanged,
    # which is what the secrets role generates.
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return "%s%d:%s$%s:%s" % (PREFIX, iterations, _b64(salt), _b64(stored_key), _b64(server_key))


def verify(password: str, secret: str) -> bool:
    """True when the password matches a stored SCRAM-SHA-256 secret."""
    if not isinstance(secret, str) or not isinstance(password, str) or not secret.startswith(PREFIX):
        return False
    try:
        head, keys = secret[len(PREFIX):].split("$", 1)
        iterations, salt = head.split(":", 1)
        expected = scram_sha_256(password, base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, secret)
