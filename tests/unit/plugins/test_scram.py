"""SCRAM-SHA-256 secrets: checked against RFC 7677's exchange, not against our own output."""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.freshtrack.deploy.plugins.filter.scram_sha_256 import FilterModule
from ansible_collections.freshtrack.deploy.plugins.module_utils import scram
from ansible_collections.freshtrack.deploy.plugins.test.scram_secret_of import TestModule

# RFC 7677 section 3: user "user", password "pencil".
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_AUTH_MESSAGE = (
    "n=user,r=rOprNGfwEbeRWgbNEkqO,"
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").encode()
RFC_CLIENT_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_SIGNATURE = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def parse(secret):
    head, keys = secret[len("SCRAM-SHA-256$"):].split("$")
    iterations, salt = head.split(":")
    stored, server = keys.split(":")
    return int(iterations), base64.b64decode(salt), base64.b64decode(stored), base64.b64decode(server)


def test_rfc7677_server_signature_and_client_proof():
    iterations, salt, stored_key, server_key = parse(scram.scram_sha_256("pencil", RFC_SALT))
    assert (iterations, salt) == (4096, RFC_SALT)
    # The server proves itself with HMAC(ServerKey, AuthMessage) ...
    assert hmac.new(server_key, RFC_AUTH_MESSAGE, hashlib.sha256).digest() == RFC_SERVER_SIGNATURE
    # ... and checks the client's proof: ClientKey = proof XOR HMAC(StoredKey, AuthMessage).
    signature = hmac.new(stored_key, RFC_AUTH_MESSAGE, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(RFC_CLIENT_PROOF, signature))
    assert hashlib.sha256(client_key).digest() == stored_key


def test_equal_passwords_get_different_random_salts():
    secrets = [scram.scram_sha_256("correct horse battery staple") for _round in range(20)]
    salts = {parse(secret)[1] for secret in secrets}
    assert len(salts) == 20 and all(len(salt) == 16 for salt in salts)
    # Each is still the password's secret: the salt is in the secret, so it verifies.
    assert all(scram.verify("correct horse battery staple", secret) for secret in secrets)


def test_the_secret_of_test_plugin():
    secret_of = TestModule().tests()["scram_secret_of"]
    kept = scram.scram_sha_256("s3cret-value")
    assert secret_of(kept, "s3cret-value")
    assert not secret_of(kept, "another-value")
    for not_a_secret in ("", None, "(dry-run placeholder)", "SCRAM-SHA-256$4096:bad$x:y"):
        assert not secret_of(not_a_secret, "s3cret-value")


def test_verify():
    secret = scram.scram_sha_256("s3cret-value")
    assert scram.verify("s3cret-value", secret)
    assert not scram.verify("s3cret-valuE", secret)
    assert not scram.verify("s3cret-value", "md5abcdef")
    assert not scram.verify("s3cret-value", "SCRAM-SHA-256$garbage")


@pytest.mark.parametrize("password, iterations", [("", 4096), (None, 4096), ("x", 1000), ("x", True)])
def test_bad_input_is_refused(password, iterations):
    with pytest.raises(ValueError):
        scram.scram_sha_256(password, iterations=iterations)


def test_filter_wraps_errors():
    scram_filter = FilterModule().filters()["scram_sha_256"]
    assert scram_filter("pencil").startswith("SCRAM-SHA-256$4096:")
    assert parse(scram_filter("pencil", iterations=8192))[0] == 8192
    with pytest.raises(AnsibleFilterError, match="non-empty"):
        scram_filter("")
