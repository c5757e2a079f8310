"""Restore into the live server: into a new database, compared with the manifest, then swapped in;
the replaced database stays under another name (never dropped here)."""
from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time

from .core import BackupError, Postgres, compare_manifest, log


def restore(job, name, expected_sha256=""):
    started = time.time()
    result = {"phases": {}}
    manifest, dump_path = job.resolve(name)
    if expected_sha256 and manifest["sha256"] != expected_sha256:
        raise BackupError(f"{manifest['name']} has sha256 {manifest['sha256']}, not the recorded {expected_sha256}: "
                          "another backup under that name; nothing restored", "checksum")
    result.update(name=manifest["name"], created=manifest["created"])
    t0 = job.phase(result, "fetch_check", started)
    src = job.cfg["source"]
    pg = Postgres(src, tempfile.mkdtemp(prefix="freshtrack-restore-"))
    try:
        db, admin_db = src["db"], src.get("maintenance_db", "postgres")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
        scratch, previous = f"{db}_restore_{stamp}", f"{db}_before_restore_{stamp}"
        pg.psql(f'CREATE DATABASE "{scratch}";', db=admin_db)
        try:
            job.stream_restore(dump_path, pg.prefix(), scratch)
            t0 = job.phase(result, "restore", t0)
            problems = compare_manifest(manifest, pg.measure(job.verify_cfg, db=scratch))
            if problems:
                raise BackupError(f"restored copy differs from the manifest: {'; '.join(problems)}", "mismatch")
            t0 = job.phase(result, "compare", t0)
        except BaseException:
            pg.psql(f'DROP DATABASE IF EXISTS "{scratch}";', db=admin_db, check=False)
            raise
        # The swap: the live database keeps its data under another name (never dropped here).
        pg.psql(f"""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE datname = '{db}' AND pid <> pg_backend_pid();
                    ALTER DATABASE "{db}" RENAME TO "{previous}";
                    ALTER DATABASE "{scratch}" RENAME TO "{db}";""", db=admin_db)
        job.phase(result, "swap", t0)
    finally:
        shutil.rmtree(pg.workdir, ignore_errors=True)
    result.update(ok=True, previous_database=previous, seconds=round(time.time() - started, 2),
                  rows=sum(manifest["counts"].values()))
    log(f"restored {manifest['name']} into {db} ({result['rows']} rows, counts and checksum match); "
        f"the database it replaced is kept as {previous}")
    return result
