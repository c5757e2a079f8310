"""Retention: which backups go, here and off-site (the plan is core.retention_plan's)."""
from __future__ import annotations

import os

from .core import BackupError, group_files, log, retention_plan


def apply_retention(job, offsite, dry_run=False):
    summary = {}
    local_policy = job.cfg["retention"]["local"]
    keep, delete = retention_plan(job.local_backups(), **local_policy)
    backups = job.local_backups()
    for name in delete:
        for part in ("dump", "sha256", "manifest"):
            if backups[name].get(part) and not dry_run:
                os.unlink(os.path.join(job.dir, backups[name][part]))
    summary["local"] = {"kept": len(keep), "deleted": delete}
    if offsite:
        try:
            remote = group_files(offsite.list(), job.prefix)
            keep_r, delete_r = retention_plan(remote, **job.cfg["retention"]["remote"])
            files = [remote[n][p] for n in delete_r for p in ("dump", "sha256", "manifest") if remote[n].get(p)]
            if files and not dry_run:
                offsite.delete(files)
            summary["remote"] = {"kept": len(keep_r), "deleted": delete_r}
        except BackupError:
            raise
        except Exception as error:  # noqa: BLE001
            raise BackupError(f"off-site retention failed: {error}", "retention") from None
    for where, item in summary.items():
        if item["deleted"]:
            log(f"retention ({where}): {'would delete' if dry_run else 'deleted'} {', '.join(item['deleted'])}; "
                f"{item['kept']} kept")
    return summary
