# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCRAM-SHA-256 secrets in PostgreSQL's stored format (RFC 5802 / RFC 7677).

PgBouncer can log in to PostgreSQL on a client's behalf with a SCRAM secret only when its
userlist holds exactly the secret PostgreSQL stores (same salt, same iterations). Deriving the
salt from the password makes the secret a pure function of the password, so both sides compute
the same string, and a re-run renders byte-identical files.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "SCRAM-SHA-256$"
DEFAULT_ITERATIONS = 4096  # PostgreSQL's scram_iterations default


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def derive_salt(password: str, context: str = "freshtrack") -> bytes:
    """16 bytes, stable for a password. The salt is public in the secret anyway."""
    return hmac.new(password.encode("utf-8"), ("scram-salt:" + context).encode("utf-8"), hashlib.sha256).digest()[:16]


def scram_sha_256(password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Return 'SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>' for a password."""
    if not isinstance(password, str) or not password:
        raise ValueError("the password must be a non-empty string")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 4096:
        raise ValueError("iterations must be an integer >= 4096")
    if salt is None:
        salt = derive_salt(password)
    # PostgreSQL prepares the password with SASLprep; printable ASCII passes through unchanged,
    # which is what the secrets role generates.
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return "%s%d:%s$%s:%s" % (PREFIX, iterations, _b64(salt), _b64(stored_key), _b64(server_key))


def verify(password: str, secret: str) -> bool:
    """True when the password matches a stored SCRAM-SHA-256 secret."""
    if not secret.startswith(PREFIX):
        return False
    try:
        head, keys = secret[len(PREFIX):].split("$", 1)
        iterations, salt = head.split(":", 1)
        expected = scram_sha_256(password, base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, secret)
