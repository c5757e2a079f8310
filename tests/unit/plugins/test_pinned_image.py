"""What counts as a pinned image reference."""
from __future__ import annotations

import pytest

from ansible_collections.freshtrack.deploy.plugins.test.pinned_image import TestModule as PinnedImageTests

pinned_image = PinnedImageTests().tests()["pinned_image"]
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("reference", [
    "postgres:15.15-bookworm", "caddy:2.10.2-alpine", "edoburu/pgbouncer:v1.24.1-p1",
    "ghcr.io/freshtrack-pro/backend:1.1.0", "localhost:5000/freshtrack-test/postgres15:local",
    "registry.example.com:5000/team/app:2026.11.23", "postgres@" + DIGEST, "postgres:15@" + DIGEST,
    "minio/minio:RELEASE.2025-09-07T16-13-09Z",
])
def test_pinned(reference):
    assert pinned_image(reference)


@pytest.mark.parametrize("reference", [
    "postgres", "postgres:latest", "postgres:LATEST", "ghcr.io/freshtrack-pro/backend",
    "localhost:5000/app", "Postgres:15", "postgres:", "postgres:15 ", "", None, 15,
    "postgres@sha256:short", "-bad:1",
])
def test_not_pinned(reference):
    assert not pinned_image(reference)
