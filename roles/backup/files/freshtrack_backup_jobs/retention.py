"""Retention: which backups go, here and off-site (the plan is core.retention_plan's), never one a
rollback may still need (core.deploy_protected, from deploy.yml's record on this host)."""
from __future__ import annotations

import datetime as dt
import json
import os

from .core import BackupError, deploy_protected, group_files, log, retention_plan


def deploy_state(job):
    """What deploy.yml recorded on this host ({} before the first deploy)."""
    path = job.cfg["retention"].get("deploy_state_file") or ""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        # Unreadable: keep every pre-deploy backup rather than guess (the age rule still applies).
        log(f"cannot read the deploy record {path} ({error}); pre-deploy backups are kept by age only")
        return {}


def with_labels(backups, read_manifest, younger_than=None):
    """The backups with their manifest's label (read only where it can matter: age limit)."""
    for backup in backups.values():
        if backup.get("manifest") and (younger_than is None or backup["time"] > younger_than):
            try:
                backup["label"] = json.loads(read_manifest(backup["manifest"])).get("label", "")
            except (OSError, ValueError):
                backup["label"] = ""
    return backups


def plan(job, backups, policy, read_manifest, state, now):
    days = float(job.cfg["retention"].get("predeploy_days", 7))
    limit = now - dt.timedelta(days=days)
    with_labels(backups, read_manifest, younger_than=limit)
    return retention_plan(backups, **policy, protected=deploy_protected(backups, state, days, now))


def apply_retention(job, offsite, dry_run=False):
    summary = {}
    now = dt.datetime.now(dt.timezone.utc)
    state = deploy_state(job)

    def read_local(filename):
        with open(os.path.join(job.dir, filename), encoding="utf-8") as handle:
            return handle.read()

    backups = job.local_backups()
    keep, delete, why = plan(job, backups, job.cfg["retention"]["local"], read_local, state, now)
    for name in delete:
        for part in ("dump", "sha256", "manifest"):
            if backups[name].get(part) and not dry_run:
                os.unlink(os.path.join(job.dir, backups[name][part]))
    summary["local"] = {"kept": len(keep), "deleted": delete, "why": {n: why[n] for n in keep}}
    if offsite:
        try:
            remote = group_files(offsite.list(), job.prefix)

            def read_remote(filename):
                # The local manifest when this host has the backup: the same file, no request.
                if os.path.exists(os.path.join(job.dir, filename)):
                    return read_local(filename)
                return offsite.read(filename)

            keep_r, delete_r, why_r = plan(job, remote, job.cfg["retention"]["remote"], read_remote, state, now)
            files = [remote[n][p] for n in delete_r for p in ("dump", "sha256", "manifest") if remote[n].get(p)]
            if files and not dry_run:
                offsite.delete(files)
            summary["remote"] = {"kept": len(keep_r), "deleted": delete_r, "why": {n: why_r[n] for n in keep_r}}
        except BackupError:
            raise
        except Exception as error:  # noqa: BLE001
            raise BackupError(f"off-site retention failed: {error}", "retention") from None
    for where, item in summary.items():
        if item["deleted"]:
            log(f"retention ({where}): {'would delete' if dry_run else 'deleted'} {', '.join(item['deleted'])}; "
                f"{item['kept']} kept")
        if dry_run:
            for name, reasons in item["why"].items():
                log(f"retention ({where}): keeps {name}: {'; '.join(reasons)}")
    return summary
