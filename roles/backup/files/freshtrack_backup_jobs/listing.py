"""Listing: local and off-site backups, newest first (with the sha256 of those on this host)."""
from __future__ import annotations

import os

from .core import group_files, is_complete


def local_sha256(job, backup):
    try:
        with open(os.path.join(job.dir, backup["sha256"]), encoding="utf-8") as handle:
            return handle.read().split()[0]
    except (OSError, IndexError, KeyError):
        return ""


def listing(job):
    local = job.local_backups()
    offsite = job.offsite()
    remote = group_files(offsite.list(), job.prefix) if offsite else {}
    rows = []
    for name in sorted(set(local) | set(remote), reverse=True):
        backup = local.get(name) or remote[name]
        rows.append({"name": name, "time": backup["time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "local": is_complete(local.get(name, {})), "offsite": is_complete(remote.get(name, {})),
                     "sha256": local_sha256(job, local[name]) if name in local else ""})
    return rows
