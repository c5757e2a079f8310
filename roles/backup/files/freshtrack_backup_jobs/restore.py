"""Restore into the live server: into a new database, checked, then swapped in; the replaced
database stays under another name (never dropped here).

- restore: one of the job's own backups, compared with its manifest (counts and readings checksum).
- import_dump: a dump made elsewhere (the seed runbook's `pg_dump ... > backup_YYYYMMDD.sql`, gzipped,
  or pg_dump's custom format, compressed with gzip or zstd or not): there is no manifest to compare
  with, so what it restored is reported (per-table row counts, the readings checksum) instead."""
from __future__ import annotations

import datetime as dt
import gzip
import os
import shutil
import subprocess
import tempfile
import time

from .core import BackupError, Postgres, compare_manifest, log, pipe_into

GZIP_MAGIC, ZSTD_MAGIC, CUSTOM_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"PGDMP"


def restore(job, name, expected_sha256=""):
    started = time.time()
    result = {"phases": {}}
    manifest, dump_path = job.resolve(name)
    if expected_sha256 and manifest["sha256"] != expected_sha256:
        raise BackupError(f"{manifest['name']} has sha256 {manifest['sha256']}, not the recorded {expected_sha256}: "
                          "another backup under that name; nothing restored", "checksum")
    result.update(name=manifest["name"], created=manifest["created"])
    t0 = job.phase(result, "fetch_check", started)

    def load(pg, scratch, t0):
        job.stream_restore(dump_path, pg.prefix(), scratch)
        t0 = job.phase(result, "restore", t0)
        problems = compare_manifest(manifest, pg.measure(job.verify_cfg, db=scratch))
        if problems:
            raise BackupError(f"restored copy differs from the manifest: {'; '.join(problems)}", "mismatch")
        return job.phase(result, "compare", t0)

    previous = _into_new_database_then_swap(job, result, load, t0)
    result.update(ok=True, previous_database=previous, seconds=round(time.time() - started, 2),
                  rows=sum(manifest["counts"].values()))
    log(f"restored {manifest['name']} into {job.cfg['source']['db']} ({result['rows']} rows, counts and checksum match); "
        f"the database it replaced is kept as {previous}")
    return result


def dump_format(path):
    """(compression, format) of a dump file: compression gzip, zstd or none; format custom (pg_dump -Fc)
    or plain (SQL). pg_dump's tar and directory formats are refused."""
    if not os.path.isfile(path):
        raise BackupError(f"{path}: no such file on this host", "missing")
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        raise BackupError(f"{path} is empty: nothing restored", "format")
    if head.startswith(GZIP_MAGIC):
        compression = "gzip"
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(512)
        except (OSError, EOFError) as error:
            raise BackupError(f"{path}: not a readable gzip file ({error})", "format") from None
    elif head.startswith(ZSTD_MAGIC):
        compression = "zstd"
        with subprocess.Popen(["zstd", "-q", "-d", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
            inner = proc.stdout.read(512)
            proc.kill()
    else:
        compression, inner = "none", head
    if inner.startswith(CUSTOM_MAGIC):
        return compression, "custom"
    if len(inner) > 262 and inner[257:262] == b"ustar":
        raise BackupError(f"{path} is pg_dump's tar format: make a plain SQL (-Fp) or custom (-Fc) dump", "format")
    if b"\x00" in inner:
        raise BackupError(f"{path} is neither SQL text nor a pg_dump custom-format archive", "format")
    return compression, "plain"


def import_dump(job, path):
    started = time.time()
    result = {"phases": {}, "imported": path}
    compression, kind = dump_format(path)
    result.update(compression=compression, format=kind)
    t0 = job.phase(result, "inspect", started)
    user = job.cfg["source"]["user"]
    decompress = {"gzip": ["gzip", "-d", "-c"], "zstd": ["zstd", "-q", "-d", "-c"], "none": ["cat"]}[compression]

    def load(pg, scratch, t0):
        if kind == "custom":
            # Objects belong to the app's user whoever owned them where the dump was made.
            sink_argv = pg.prefix() + ["pg_restore", "--exit-on-error", "--no-owner", "--no-privileges", "-U", user, "-d", scratch]
        else:
            # One transaction: a statement that fails leaves nothing half-restored.
            sink_argv = pg.prefix() + ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                                       "-U", user, "-d", scratch]
        pipe_into([decompress], path, sink_argv, "pg_restore" if kind == "custom" else "psql")
        t0 = job.phase(result, "restore", t0)
        measured = pg.measure(job.verify_cfg, db=scratch)
        if not measured["counts"]:
            raise BackupError(f"{path} restored no table: nothing swapped in", "empty")
        result.update(counts=measured["counts"], checksum=measured["checksum"])
        return job.phase(result, "measure", t0)

    previous = _into_new_database_then_swap(job, result, load, t0)
    result.update(ok=True, previous_database=previous, seconds=round(time.time() - started, 2),
                  rows=sum(result["counts"].values()))
    log(f"imported {path} ({kind} format, {compression}) into {job.cfg['source']['db']}: "
        + ", ".join(f"{table} {count}" for table, count in sorted(result["counts"].items()))
        + f"; the database it replaced is kept as {previous}")
    return result


def _into_new_database_then_swap(job, result, load, t0):
    """load(pg, scratch, t0) fills a new database; only when it returns is that database swapped in.
    Returns the name the replaced database keeps."""
    src = job.cfg["source"]
    # Beside the backups, not under /tmp (see run.py: the Docker daemon must see the password file).
    os.makedirs(job.dir, mode=0o700, exist_ok=True)
    pg = Postgres(src, tempfile.mkdtemp(prefix=".work-restore-", dir=job.dir))
    try:
        db, admin_db = src["db"], src.get("maintenance_db", "postgres")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
        scratch, previous = f"{db}_restore_{stamp}", f"{db}_before_restore_{stamp}"
        pg.psql(f'CREATE DATABASE "{scratch}";', db=admin_db)
        try:
            t0 = load(pg, scratch, t0)
        except BaseException:
            pg.psql(f'DROP DATABASE IF EXISTS "{scratch}";', db=admin_db, check=False)
            raise
        # The swap: the live database keeps its data under another name (never dropped here).
        pg.psql(f"""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE datname = '{db}' AND pid <> pg_backend_pid();
                    ALTER DATABASE "{db}" RENAME TO "{previous}";
                    ALTER DATABASE "{scratch}" RENAME TO "{db}";""", db=admin_db)
        job.phase(result, "swap", t0)
        return previous
    finally:
        shutil.rmtree(pg.workdir, ignore_errors=True)
