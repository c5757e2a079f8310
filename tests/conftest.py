"""Make the checkout importable as ansible_collections.freshtrack.deploy (through the committed
collections/ symlink), as Ansible itself imports plugins and module_utils."""
from __future__ import annotations

import pathlib
import sys

import pytest

COLLECTIONS = pathlib.Path(__file__).resolve().parents[1] / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


def pytest_configure(config):
    # scripts/test runs the integration tests on two workers, then the ones marked `alone` by
    # themselves: timings compared side by side must not share the cores with another test.
    config.addinivalue_line("markers", "alone: a timing measurement; run without other tests beside it")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    # Under xdist's loadgroup (scripts/test), a test file stays on one worker, so its module-scoped
    # containers start once; files whose cases are independent say SPREAD_OVER_WORKERS = True.
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and not getattr(module, "SPREAD_OVER_WORKERS", False):
            item.add_marker(pytest.mark.xdist_group(module.__name__))
