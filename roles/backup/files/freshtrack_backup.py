#!/usr/bin/env python3
"""FreshTrack PostgreSQL backups: dump, verify, restore, retain, upload (freshtrack.deploy.backup).

  freshtrack-backup run [--label L]      dump, checksum, (encrypt), upload, retention, metrics
  freshtrack-backup verify [NAME]        restore the newest (or NAME) into a throwaway container and
                                         compare row counts and the readings checksum with its manifest
  freshtrack-backup restore NAME|latest --confirm [--sha256 HASH]
                                         restore into a new database, compare, then swap it in; the
                                         replaced database stays as <db>_before_restore_<time>
  freshtrack-backup import FILE --confirm
                                         a dump made elsewhere (plain SQL or pg_dump -Fc; gzip, zstd or
                                         none), restored the same way; reports per-table row counts
  freshtrack-backup migrate copy|finish --target FILE --confirm
                                         move the database to an empty one at a managed endpoint:
                                         copy while the app writes, finish (writers stopped) with the
                                         rows since and both sides compared (playbooks/migrate_database.yml)
  freshtrack-backup list [--json]        local and off-site backups
  freshtrack-backup retention --dry-run  what retention would delete, and why each kept backup is kept
                                         (counts, newest complete, before the current/previous deploy,
                                         pre-deploy younger than retention.predeploy_days)

One backup is three files: <name>.dump.zst[.age|.gpg], <name>.sha256 and <name>.manifest.json (row
counts and a checksum over recent readings, taken in the dump's own snapshot). Files are written
under a .part name and renamed when complete, the manifest last: a backup without a manifest is not
a backup. Configuration: /etc/freshtrack/backup.json (written by the role). Exit codes: 0 ok,
1 failed, 2 bad usage or configuration, 75 another run holds the lock.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

# The library beside this file (also when run through the /usr/local/sbin symlink: Python puts the
# real file's directory on the path).
from freshtrack_backup_jobs import listing, migrate, restore, retention, run, verify
from freshtrack_backup_jobs.core import BackupError, log
from freshtrack_backup_jobs.job import Job

EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 1, 2, 75


def load_config(path):
    with open(path, encoding="utf-8") as handle:
        cfg = json.load(handle)
    for key in ("name", "dir", "source", "retention", "s3", "encryption", "compression", "verify",
                "lock_file", "state_file", "min_free_bytes"):
        if key not in cfg:
            raise BackupError(f"{path} lacks '{key}'", "config")
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(prog="freshtrack-backup", description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--config", default="/etc/freshtrack/backup.json")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run").add_argument("--label", default="scheduled")
    sub.add_parser("verify").add_argument("name", nargs="?")
    restore_args = sub.add_parser("restore")
    restore_args.add_argument("name")
    restore_args.add_argument("--confirm", action="store_true")
    restore_args.add_argument("--sha256", default="", help="refuse unless the backup's sha256 is this one")
    import_args = sub.add_parser("import")
    import_args.add_argument("file")
    import_args.add_argument("--confirm", action="store_true")
    migrate_args = sub.add_parser("migrate")
    migrate_args.add_argument("phase", choices=["copy", "finish"])
    migrate_args.add_argument("--target", required=True, help="JSON: host, port, db, user, password_file, sslmode, sslrootcert, image")
    migrate_args.add_argument("--append-only", action="append", default=[], metavar="TABLE:COLUMN",
                              help="a table only ever appended to, and its increasing key (the readings: public.sensor_readings:id)")
    migrate_args.add_argument("--confirm", action="store_true")
    sub.add_parser("list")
    sub.add_parser("retention").add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    try:
        job = Job(load_config(args.config))
        if args.command == "run":
            result = run.run(job, args.label)
        elif args.command == "verify":
            result = verify.verify(job, args.name)
        elif args.command == "restore":
            if not args.confirm:
                raise BackupError("restore replaces the live database: add --confirm", "usage")
            with job.lock():
                result = restore.restore(job, args.name, args.sha256)
        elif args.command == "import":
            if not args.confirm:
                raise BackupError("import replaces the live database: add --confirm", "usage")
            with job.lock():
                result = restore.import_dump(job, os.path.abspath(args.file))
        elif args.command == "migrate":
            if not args.confirm:
                raise BackupError("migrate writes into another database server: add --confirm", "usage")
            append_only = dict(item.rsplit(":", 1) for item in args.append_only if ":" in item)
            with job.lock():
                result = migrate.migrate(job, args.phase, args.target, append_only)
        elif args.command == "list":
            result = {"ok": True, "backups": listing.listing(job)}
            if not args.json:
                for row in result["backups"]:
                    print(f"{row['name']}  local={'yes' if row['local'] else 'no'}  "
                          f"off-site={'yes' if row['offsite'] else 'no'}")
        else:
            with job.lock():
                result = {"ok": True, **retention.apply_retention(job, job.offsite(), dry_run=args.dry_run)}
    except BackupError as error:
        result = {"ok": False, "reason": error.reason, "error": str(error)}
    except Exception as error:  # noqa: BLE001 - one JSON answer and a non-zero exit, whatever happened
        result = {"ok": False, "reason": "error", "error": f"{type(error).__name__}: {error}"}
    if args.json:
        print(json.dumps(result, default=str))
    if not result.get("ok"):
        if not args.json:
            log(f"FAILED: {result.get('error')}")
        return EXIT_LOCKED if result.get("reason") == "locked" else (
            EXIT_USAGE if result.get("reason") in ("usage", "config") else EXIT_FAILED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
