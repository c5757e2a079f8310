"""Listing: local and off-site backups, newest first."""
from __future__ import annotations

from .core import group_files, is_complete


def listing(job):
    local = job.local_backups()
    offsite = job.offsite()
    remote = group_files(offsite.list(), job.prefix) if offsite else {}
    rows = []
    for name in sorted(set(local) | set(remote), reverse=True):
        backup = local.get(name) or remote[name]
        rows.append({"name": name, "time": backup["time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "local": is_complete(local.get(name, {})), "offsite": is_complete(remote.get(name, {}))})
    return rows
