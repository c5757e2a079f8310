"""Make the checkout importable as ansible_collections.freshtrack.deploy (through the committed
collections/ symlink), as Ansible itself imports plugins and module_utils."""
from __future__ import annotations

import pathlib
import sys

COLLECTIONS = pathlib.Path(__file__).resolve().parents[1] / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
