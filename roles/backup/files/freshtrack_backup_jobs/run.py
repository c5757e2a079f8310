"""The run: dump (with counts and a checksum in the dump's own snapshot), compress, encrypt,
checksum, upload, retention, metrics."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import tempfile
import time

from .core import (SUFFIXES, BackupError, Postgres, SnapshotSession, backup_name, compress_command, encrypt_command,
                   format_bytes, free_bytes_ok, is_complete, log, measure_with, run_pipeline, write_atomic)
from .retention import apply_retention


def run(job, label):
    started = time.time()
    result = {"started": started, "label": label, "phases": {}}
    try:
        with job.lock():
            run_steps(job, result)
        result.update(ok=True, reason="")
    except BackupError as error:
        result.update(ok=False, reason=error.reason, error=str(error))
        if error.reason == "locked":
            raise
    except Exception as error:  # noqa: BLE001 - any failure must reach the metric and the exit code
        result.update(ok=False, reason="error", error=f"{type(error).__name__}: {error}")
    finally:
        if result.get("reason") != "locked":
            result["seconds"] = round(time.time() - started, 2)
            run_metrics(job, result)
    return result


def run_steps(job, result):
    os.makedirs(job.dir, mode=0o700, exist_ok=True)
    # Leftovers of an interrupted run are not backups (never renamed); they go first, and so does its
    # work directory (a copy of the managed database's password in it).
    for stale in [f for f in os.listdir(job.dir) if f.endswith(".part")]:
        os.unlink(os.path.join(job.dir, stale))
        log(f"removed the incomplete {stale} of an interrupted run")
    for stale in [f for f in os.listdir(job.dir) if f.startswith(".work-")]:
        shutil.rmtree(os.path.join(job.dir, stale), ignore_errors=True)
        log(f"removed the work directory {stale} of an interrupted run")
    stat = os.statvfs(job.dir)
    free = stat.f_bavail * stat.f_frsize
    if not free_bytes_ok(free, job.cfg["min_free_bytes"]):
        raise BackupError(f"{format_bytes(free)} free in {job.dir}, below the threshold of "
                          f"{format_bytes(job.cfg['min_free_bytes'])}: nothing dumped", "disk")
    now = dt.datetime.now(dt.timezone.utc)
    name = backup_name(job.prefix, now)
    dump_file = name + SUFFIXES[job.cfg["encryption"]["method"]]
    dump_path = os.path.join(job.dir, dump_file)
    t0 = time.time()
    # Not under /tmp: the unit's PrivateTmp hides that from the Docker daemon, which bind-mounts the
    # password file from here into a managed database's client container.
    with tempfile.TemporaryDirectory(prefix=".work-", dir=job.dir) as work:
        pg = Postgres(job.cfg["source"], work)
        session = SnapshotSession(pg)
        try:
            t0 = job.phase(result, "snapshot", t0)
            commands = [pg.prefix(interactive=False) + [
                "pg_dump", "--format=custom", "--compress=0", f"--snapshot={session.snapshot}",
                "-U", pg.user, "-d", pg.db], compress_command(job.cfg)]
            if encrypt_command(job.cfg):
                commands.append(encrypt_command(job.cfg))
            try:
                sha256, size = run_pipeline(commands, sink_path=dump_path + ".part")
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dump_path + ".part")
                raise
            t0 = job.phase(result, "dump_compress", t0)
            # The manifest's counts and checksum, in the snapshot the dump read: afterwards, not
            # alongside, so the dump has the CPUs to itself (scripts/measure-backup: the checksum
            # beside the dump made it 25 % slower on 2 cores; the total stays the same).
            try:
                measured = measure_with(session.query, job.verify_cfg)
            except BackupError as error:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dump_path + ".part")
                raise BackupError(f"the row counts in the dump's snapshot failed: {error}", "database") from None
            t0 = job.phase(result, "manifest_counts", t0)
        finally:
            session.close()
    manifest = {"name": name, "file": dump_file, "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "label": result["label"], "bytes": size, "sha256": sha256, "format": "pg_dump custom, zstd",
                "encryption": job.cfg["encryption"]["method"], "database": job.cfg["source"]["db"],
                "snapshot_counts": measured["counts"], "checksum": measured["checksum"]}
    manifest["counts"] = manifest.pop("snapshot_counts")
    os.replace(dump_path + ".part", dump_path)
    write_atomic(os.path.join(job.dir, name + ".sha256"), f"{sha256}  {dump_file}\n")
    write_atomic(os.path.join(job.dir, name + ".manifest.json"), json.dumps(manifest, indent=2) + "\n")
    result.update(name=name, file=dump_path, bytes=size, sha256=sha256,
                  rows=sum(measured["counts"].values()))
    log(f"{dump_file}: {format_bytes(size)}, sha256 {sha256[:16]}..., "
        f"{result['rows']} rows in {len(measured['counts'])} tables")
    t0 = time.time()
    offsite = job.offsite()
    if offsite:
        try:
            for filename in (dump_file, name + ".sha256", name + ".manifest.json"):
                offsite.upload(os.path.join(job.dir, filename), sha256 if filename == dump_file else None)
            if offsite.size(dump_file) != size:
                raise BackupError(f"off-site copy of {dump_file} has another size than the local file", "upload")
        except BackupError:
            raise
        except Exception as error:  # noqa: BLE001 - botocore's errors are many; the message says it
            raise BackupError(f"upload to s3://{offsite.bucket}/{offsite.key('')} failed: {error} "
                              f"(the local backup {dump_file} is kept)", "upload") from None
        result["uploaded"] = True
        t0 = job.phase(result, "upload", t0)
        log(f"uploaded to s3://{offsite.bucket}/{offsite.key(dump_file)}")
    result["retention"] = apply_retention(job, offsite)
    job.phase(result, "retention", t0)


def run_metrics(job, result):
    now = time.time()
    changes = {"last_run": now, "last_result": "success" if result["ok"] else result["reason"]}
    if result["ok"]:
        changes.update(last_success=now, last_size=result["bytes"], last_name=result["name"])
    with contextlib.suppress(OSError):
        job.save_state(**changes)
    state = job.state() or changes
    local = job.local_backups()
    values = {
        "last_run_timestamp_seconds": now,
        "last_success_timestamp_seconds": state.get("last_success", 0),
        "success": 1 if result["ok"] else 0,
        "duration_seconds": result.get("seconds", 0),
        "size_bytes": state.get("last_size", 0),
        "local_count": sum(1 for b in local.values() if is_complete(b)),
        "offsite_enabled": 1 if job.cfg["s3"].get("enabled") else 0,
        "upload_success": 1 if result.get("uploaded") else 0,
        "failure": [({"reason": reason}, 1 if (not result["ok"] and result["reason"] == reason) else 0)
                    for reason in ("disk", "database", "dump", "upload", "retention", "encryption", "error")],
    }
    with contextlib.suppress(OSError):
        job.write_metrics("run", values, {
            "last_run_timestamp_seconds": "When the backup job last ran.",
            "last_success_timestamp_seconds": "When a backup last completed (0: never).",
            "success": "1 if the last backup run succeeded.",
            "duration_seconds": "Duration of the last backup run.",
            "size_bytes": "Size of the last successful backup.",
            "local_count": "Complete backups on the host.",
            "offsite_enabled": "1 if backups are uploaded to S3-compatible storage.",
            "upload_success": "1 if the last run uploaded its backup off-site.",
            "failure": "1 for the reason the last backup run failed."})
