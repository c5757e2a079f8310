"""Make the checkout importable as ansible_collections.freshtrack.deploy (through the committed
collections/ symlink), as Ansible itself imports plugins and module_utils."""
from __future__ import annotations

import pathlib
import sys

COLLECTIONS = pathlib.Path(__file__).resolve().parents[1] / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


def pytest_configure(config):
    # scripts/test runs the integration tests on two workers, then the ones marked `alone` by
    # themselves: timings compared side by side must not share the cores with another test.
    config.addinivalue_line("markers", "alone: a timing measurement; run without other tests beside it")
