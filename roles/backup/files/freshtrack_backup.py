#!/usr/bin/env python3
"""FreshTrack PostgreSQL backups: dump, verify, restore, retain, upload (freshtrack.deploy.backup).

  freshtrack-backup run [--label L]      dump, checksum, (encrypt), upload, retention, metrics
  freshtrack-backup verify [NAME]        restore the newest (or NAME) into a throwaway container and
                                         compare row counts and the readings checksum with its manifest
  freshtrack-backup restore NAME|latest --confirm
                                         restore into a new database, compare, then swap it in; the
                                         replaced database stays as <db>_before_restore_<time>
  freshtrack-backup list [--json]        local and off-site backups
  freshtrack-backup retention --dry-run  what retention would delete

One backup is three files: <name>.dump.zst[.age|.gpg], <name>.sha256 and <name>.manifest.json (row
counts and a checksum over recent readings, taken in the dump's own snapshot). Files are written
under a .part name and renamed when complete, the manifest last: a backup without a manifest is not
a backup. Configuration: /etc/freshtrack/backup.json (written by the role). Exit codes: 0 ok,
1 failed, 2 bad usage or configuration, 75 another run holds the lock.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 1, 2, 75
CHUNK = 1 << 20
NAME_RE = re.compile(r"^(?P<prefix>[A-Za-z0-9_.-]+?)-(?P<stamp>\d{8}T\d{6}Z)$")
STAMP = "%Y%m%dT%H%M%SZ"
SUFFIXES = {"none": ".dump.zst", "age": ".dump.zst.age", "gpg": ".dump.zst.gpg"}


class BackupError(Exception):
    """A failure with a message for the operator (and the metric's reason label)."""

    def __init__(self, message, reason="error"):
        super().__init__(message)
        self.reason = reason


# ---- Pure logic (unit-tested in tests/unit/test_backup_script.py) --------------------------------------

def backup_name(prefix, when):
    return f"{prefix}-{when.astimezone(dt.timezone.utc).strftime(STAMP)}"


def parse_backup_name(name, prefix):
    """The UTC time of a backup name of this prefix, or None for any other name."""
    match = NAME_RE.match(name)
    if not match or match.group("prefix") != prefix:
        return None
    return dt.datetime.strptime(match.group("stamp"), STAMP).replace(tzinfo=dt.timezone.utc)


def group_files(filenames, prefix):
    """{backup name: {'time', 'dump', 'sha256', 'manifest'}} from a directory or bucket listing."""
    backups = {}
    for filename in filenames:
        for part, suffixes in (("dump", tuple(SUFFIXES.values())), ("sha256", (".sha256",)),
                               ("manifest", (".manifest.json",))):
            suffix = next((s for s in suffixes if filename.endswith(s)), None)
            if suffix is None:
                continue
            name = filename[: -len(suffix)]
            when = parse_backup_name(name, prefix)
            if when is not None:
                backups.setdefault(name, {"name": name, "time": when})[part] = filename
            break
    return backups


def is_complete(backup):
    return all(backup.get(part) for part in ("dump", "sha256", "manifest"))


def retention_plan(backups, daily, weekly, monthly):
    """(keep, delete): names of backups to keep and to delete, newest first.

    Kept: the newest backup of each of the `daily` newest days that have one, of the `weekly`
    newest ISO weeks and of the `monthly` newest months, and always the newest complete backup.
    Incomplete sets (a dump without manifest, say from an interrupted upload) are left alone unless
    a newer complete backup exists, so a failing job never deletes the last thing it has.
    """
    ordered = sorted(backups.values(), key=lambda b: b["time"], reverse=True)
    keep = set()
    for count, period in ((daily, lambda t: t.date()), (weekly, lambda t: t.isocalendar()[:2]),
                          (monthly, lambda t: (t.year, t.month))):
        seen = []
        for backup in ordered:
            key = period(backup["time"])
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            keep.add(backup["name"])
    complete = [b for b in ordered if is_complete(b)]
    if complete:
        keep.add(complete[0]["name"])
        newest_good = complete[0]["time"]
        keep.update(b["name"] for b in ordered if not is_complete(b) and b["time"] > newest_good)
    else:
        keep.update(b["name"] for b in ordered)
    names = [b["name"] for b in ordered]
    return [n for n in names if n in keep], [n for n in names if n not in keep]


def compare_manifest(expected, actual):
    """Differences between the counts/checksum recorded at dump time and those of a restore."""
    problems = []
    want, got = expected.get("counts", {}), actual.get("counts", {})
    for table in sorted(set(want) | set(got)):
        if want.get(table) != got.get(table):
            problems.append(f"{table}: {want.get(table, 'missing')} rows at dump time, "
                            f"{got.get(table, 'missing')} restored")
    want_sum, got_sum = expected.get("checksum") or {}, actual.get("checksum") or {}
    if want_sum.get("value") != got_sum.get("value") or want_sum.get("rows") != got_sum.get("rows"):
        problems.append(f"readings checksum: {want_sum.get('rows')} rows / {want_sum.get('value')} at dump "
                        f"time, {got_sum.get('rows')} rows / {got_sum.get('value')} restored")
    return problems


def render_metrics(prefix, values, help_texts):
    """Prometheus text format; values: {metric: number or [(labels dict, number)]}."""
    lines = []
    for metric in sorted(values):
        name = f"{prefix}_{metric}"
        lines += [f"# HELP {name} {help_texts.get(metric, metric)}", f"# TYPE {name} gauge"]
        samples = values[metric] if isinstance(values[metric], list) else [({}, values[metric])]
        for labels, value in samples:
            label_text = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                                  for k, v in sorted(labels.items()))
            number = f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"
            lines.append(f"{name}{{{label_text}}} {number}" if label_text else f"{name} {number}")
    return "\n".join(lines) + "\n"


def free_bytes_ok(free, minimum):
    return free >= minimum


def format_bytes(size):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024
    return f"{size} B"


# ---- SQL the manifest and the verification share -------------------------------------------------------

COUNTS_SQL = (
    "SELECT format('%I.%I', n.nspname, c.relname), "
    "(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),"
    " false, true, '')))[1]::text "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1;")


def checksum_sql(table, column, window):
    """Rows of the last `window` before the newest reading: count and an order-independent sum of
    64-bit hashes of each row's text (no sort, so it stays cheap on millions of rows)."""
    ident = ".".join('"' + part.replace('"', '""') + '"' for part in table.split("."))
    col = '"' + column.replace('"', '""') + '"'
    return (f"SELECT count(*), coalesce(sum(hashtextextended(r::text, 0)::numeric), 0) FROM {ident} r "
            f"WHERE {col} >= (SELECT max({col}) - interval '{int(window)} seconds' FROM {ident});")


def table_exists_sql(table):
    return f"SELECT to_regclass('{table.replace(chr(39), chr(39) * 2)}') IS NOT NULL;"


# ---- Running PostgreSQL clients -----------------------------------------------------------------------

class Postgres:
    """psql/pg_dump/pg_restore of the stack's PostgreSQL: `docker exec` into its container, or for
    managed databases a client container of the same image on the host network."""

    def __init__(self, source, workdir):
        self.source = source
        self.user, self.db = source["user"], source["db"]
        self.workdir = workdir
        self._pgpass = None

    def prefix(self, interactive=True):
        if self.source.get("mode", "container") == "container":
            return ["docker", "exec"] + (["-i"] if interactive else []) + [self.source["container"]]
        if self._pgpass is None:
            with open(self.source["password_file"], encoding="utf-8") as handle:
                password = handle.read().strip()
            self._pgpass = os.path.join(self.workdir, "pgpass")
            fd = os.open(self._pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(f"*:*:*:{self.user}:{password.replace(chr(92), chr(92) * 2).replace(':', chr(92) + ':')}\n")
        return ["docker", "run", "--rm"] + (["-i"] if interactive else []) + [
            "--network", "host", "-v", f"{self._pgpass}:/run/pgpass:ro", "-e", "PGPASSFILE=/run/pgpass",
            "-e", f"PGHOST={self.source['host']}", "-e", f"PGPORT={self.source.get('port', 5432)}",
            "-e", f"PGSSLMODE={self.source.get('sslmode', 'require')}", self.source["image"]]

    def psql(self, sql, db=None, check=True):
        result = subprocess.run(
            self.prefix() + ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                             "-U", self.user, "-d", db or self.db],
            input=sql, capture_output=True, text=True, timeout=3600, check=False)
        if check and result.returncode != 0:
            raise BackupError(f"psql failed: {result.stderr.strip()[-500:]}", "database")
        return result.stdout

    def measure(self, verify_cfg, db=None):
        """Per-table row counts and the readings checksum of a database."""
        return measure_with(lambda sql: self.psql(sql, db=db), verify_cfg)


def measure_with(run_sql, verify_cfg):
    counts = {}
    for line in run_sql(COUNTS_SQL).splitlines():
        if "\t" in line:
            table, count = line.split("\t", 1)
            counts[table] = int(count)
    checksum = None
    table = verify_cfg.get("checksum_table", "")
    if table and run_sql(table_exists_sql(table)).strip() == "t":
        rows, value = run_sql(checksum_sql(table, verify_cfg["checksum_column"],
                                           verify_cfg["checksum_window_seconds"])).strip().split("\t")
        checksum = {"table": table, "column": verify_cfg["checksum_column"],
                    "window_seconds": verify_cfg["checksum_window_seconds"], "rows": int(rows), "value": value}
    return {"counts": counts, "checksum": checksum}


class SnapshotSession:
    """A psql session holding a REPEATABLE READ transaction open: pg_dump imports its snapshot, and
    the manifest's counts are taken in the very same snapshot (exact, even under writes)."""

    def __init__(self, pg):
        self.proc = subprocess.Popen(
            pg.prefix() + ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                           "-U", pg.user, "-d", pg.db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.snapshot = self.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"
                                   "SELECT pg_export_snapshot();").strip()
        if not re.match(r"^[0-9A-F-]+$", self.snapshot):
            raise BackupError(f"could not export a snapshot: {self.snapshot or self._stderr()}", "database")

    def query(self, sql):
        marker = "__freshtrack_done__"
        try:
            self.proc.stdin.write(f"{sql}\nSELECT '{marker}';\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise BackupError(f"psql ended: {self._stderr()}", "database") from None
        out = []
        for line in self.proc.stdout:
            if line.rstrip("\n") == marker:
                return "".join(out)
            out.append(line)
        raise BackupError(f"psql ended: {self._stderr()}", "database")

    def _stderr(self):
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
            return self.proc.stderr.read().strip()[-500:]
        return "no answer"

    def close(self):
        with contextlib.suppress(Exception):
            self.proc.stdin.write("COMMIT;\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        if self.proc.poll() is None:
            self.proc.kill()


# ---- Pipelines -----------------------------------------------------------------------------------------

def compress_command(cfg):
    return ["zstd", "-q", "-c", f"-{int(cfg['compression']['level'])}", f"-T{int(cfg['compression']['threads'])}"]


def gpg_home(enc):
    home = enc.get("gpg_home") or "/root/.gnupg"
    os.makedirs(home, mode=0o700, exist_ok=True)
    return home


def encrypt_command(cfg):
    enc = cfg["encryption"]
    if enc["method"] == "age":
        return ["age", "--encrypt", "-R", enc["recipient_file"]]
    if enc["method"] == "gpg":
        return ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", gpg_home(enc),
                "--trust-model", "always", "--encrypt", "--recipient-file", enc["recipient_file"], "--output", "-"]
    return None


def decrypt_command(cfg):
    enc = cfg["encryption"]
    if enc["method"] == "age":
        if not enc.get("identity_file"):
            raise BackupError("backups are age-encrypted and no identity file is configured on this host "
                              "(encryption.identity_file): restore where the private key is", "encryption")
        return ["age", "--decrypt", "-i", enc["identity_file"]]
    if enc["method"] == "gpg":
        return ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", gpg_home(enc),
                "--decrypt"]
    return None


def run_pipeline(commands, source_path=None, sink_path=None, sink_stdin=None):
    """commands[0] | commands[1] | ... ; the first reads source_path (if any); the output is hashed and
    written to sink_path (if any) or fed to sink_stdin (a Popen). Returns (sha256, bytes). Every stage
    must exit 0: a dump killed midway fails the whole backup."""
    source = open(source_path, "rb") if source_path else None  # noqa: SIM115 - closed in finally
    procs, stdin = [], source or subprocess.DEVNULL
    stderr_files = []
    try:
        for command in commands:
            err = tempfile.TemporaryFile()
            stderr_files.append(err)
            proc = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=err)
            if procs:
                procs[-1].stdout.close()  # the next stage owns the pipe now (SIGPIPE reaches the writer)
            procs.append(proc)
            stdin = proc.stdout
        digest, size = hashlib.sha256(), 0
        out = os.fdopen(os.open(sink_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") if sink_path else sink_stdin
        try:
            while True:
                chunk = procs[-1].stdout.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        finally:
            if sink_path:
                out.flush()
                os.fsync(out.fileno())
                out.close()
        failures = []
        for command, proc, err in zip(commands, procs, stderr_files):
            code = proc.wait()
            if code != 0:
                err.seek(0)
                failures.append(f"{command[0] if command[0] != 'docker' else ' '.join(command[:2])}"
                                f"{' ' + command[3] if command[:2] == ['docker', 'exec'] and len(command) > 3 else ''}"
                                f" exited {code}: {err.read().decode(errors='replace').strip()[-400:]}")
        if failures:
            raise BackupError("; ".join(failures), "dump")
        return digest.hexdigest(), size
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if source:
            source.close()
        for err in stderr_files:
            err.close()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path, data, mode=0o600):
    tmp = f"{path}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def log(message):
    """Progress for the journal on stderr; stdout carries only the --json answer."""
    print(f"freshtrack-backup: {message}", file=sys.stderr, flush=True)


# ---- Off-site storage (boto3, imported only when configured) -------------------------------------------

class OffSite:
    def __init__(self, s3):
        import boto3  # noqa: PLC0415 - only hosts with off-site storage need it
        from botocore.config import Config  # noqa: PLC0415

        self.bucket, self.prefix = s3["bucket"], s3.get("prefix", "").strip("/")
        kwargs = {"region_name": s3.get("region") or None, "endpoint_url": s3.get("endpoint_url") or None,
                  "config": Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3})}
        if s3.get("access_key_id"):
            kwargs.update(aws_access_key_id=s3["access_key_id"], aws_secret_access_key=s3["secret_access_key"])
        self.client = boto3.client("s3", **kwargs)
        self.storage_class = s3.get("storage_class") or None

    def key(self, filename):
        return f"{self.prefix}/{filename}" if self.prefix else filename

    def upload(self, path, sha256=None):
        extra = {"Metadata": {"sha256": sha256}} if sha256 else {}
        if self.storage_class:
            extra["StorageClass"] = self.storage_class
        self.client.upload_file(path, self.bucket, self.key(os.path.basename(path)), ExtraArgs=extra or None)

    def size(self, filename):
        return self.client.head_object(Bucket=self.bucket, Key=self.key(filename))["ContentLength"]

    def list(self):
        names, token = [], None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": self.key("")}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.client.list_objects_v2(**kwargs)
            names += [obj["Key"][len(self.key("")):] for obj in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return names
            token = page["NextContinuationToken"]

    def download(self, filename, path):
        self.client.download_file(self.bucket, self.key(filename), path)

    def delete(self, filenames):
        for start in range(0, len(filenames), 1000):
            batch = filenames[start:start + 1000]
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": self.key(f)} for f in batch], "Quiet": True})
            if answer.get("Errors"):
                raise BackupError(f"off-site deletion failed: {answer['Errors'][:3]}", "retention")


# ---- Commands ------------------------------------------------------------------------------------------

class Job:
    def __init__(self, cfg):
        self.cfg = cfg
        self.dir = cfg["dir"]
        self.prefix = cfg["name"]
        self.verify_cfg = cfg["verify"]

    # -- shared helpers
    def local_backups(self):
        return group_files(os.listdir(self.dir), self.prefix) if os.path.isdir(self.dir) else {}

    def offsite(self):
        return OffSite(self.cfg["s3"]) if self.cfg["s3"].get("enabled") else None

    @contextlib.contextmanager
    def lock(self):
        os.makedirs(os.path.dirname(self.cfg["lock_file"]), exist_ok=True)
        with open(self.cfg["lock_file"], "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise BackupError(f"another backup job holds {self.cfg['lock_file']} ({handle.read().strip()})",
                                  "locked") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} since {dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}\n")
            handle.flush()
            yield

    def write_metrics(self, kind, values, help_texts):
        textfile_dir = self.cfg.get("textfile_dir")
        if not textfile_dir:
            return
        os.makedirs(textfile_dir, exist_ok=True)
        write_atomic(os.path.join(textfile_dir, f"freshtrack_backup{'_verify' if kind == 'verify' else ''}.prom"),
                     render_metrics("freshtrack_backup" + ("_verify" if kind == "verify" else ""), values, help_texts),
                     mode=0o644)

    def state(self):
        with contextlib.suppress(FileNotFoundError, ValueError):
            with open(self.cfg["state_file"], encoding="utf-8") as handle:
                return json.load(handle)
        return {}

    def save_state(self, **changes):
        state = self.state()
        state.update(changes)
        os.makedirs(os.path.dirname(self.cfg["state_file"]), exist_ok=True)
        write_atomic(self.cfg["state_file"], json.dumps(state, indent=2) + "\n", mode=0o644)

    # -- run
    def run(self, label):
        started = time.time()
        result = {"started": started, "label": label, "phases": {}}
        try:
            with self.lock():
                self._run(result)
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
                self._run_metrics(result)
        return result

    def _phase(self, result, name, t0):
        result["phases"][name] = round(time.time() - t0, 2)
        return time.time()

    def _run(self, result):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        # Leftovers of an interrupted run are not backups (never renamed); they go first.
        for stale in [f for f in os.listdir(self.dir) if f.endswith(".part")]:
            os.unlink(os.path.join(self.dir, stale))
            log(f"removed the incomplete {stale} of an interrupted run")
        stat = os.statvfs(self.dir)
        free = stat.f_bavail * stat.f_frsize
        if not free_bytes_ok(free, self.cfg["min_free_bytes"]):
            raise BackupError(f"{format_bytes(free)} free in {self.dir}, below the threshold of "
                              f"{format_bytes(self.cfg['min_free_bytes'])}: nothing dumped", "disk")
        now = dt.datetime.now(dt.timezone.utc)
        name = backup_name(self.prefix, now)
        dump_file = name + SUFFIXES[self.cfg["encryption"]["method"]]
        dump_path = os.path.join(self.dir, dump_file)
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="freshtrack-backup-") as work:
            pg = Postgres(self.cfg["source"], work)
            session = SnapshotSession(pg)
            try:
                t0 = self._phase(result, "snapshot", t0)
                commands = [pg.prefix(interactive=False) + [
                    "pg_dump", "--format=custom", "--compress=0", f"--snapshot={session.snapshot}",
                    "-U", pg.user, "-d", pg.db], compress_command(self.cfg)]
                if encrypt_command(self.cfg):
                    commands.append(encrypt_command(self.cfg))
                try:
                    sha256, size = run_pipeline(commands, sink_path=dump_path + ".part")
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(dump_path + ".part")
                    raise
                t0 = self._phase(result, "dump_compress", t0)
                # The manifest's counts and checksum, in the snapshot the dump read: afterwards, not
                # alongside, so the dump has the CPUs to itself (scripts/measure-backup: the checksum
                # beside the dump made it 25 % slower on 2 cores; the total stays the same).
                try:
                    measured = measure_with(session.query, self.verify_cfg)
                except BackupError as error:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(dump_path + ".part")
                    raise BackupError(f"the row counts in the dump's snapshot failed: {error}", "database") from None
                t0 = self._phase(result, "manifest_counts", t0)
            finally:
                session.close()
        manifest = {"name": name, "file": dump_file, "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "label": result["label"], "bytes": size, "sha256": sha256, "format": "pg_dump custom, zstd",
                    "encryption": self.cfg["encryption"]["method"], "database": self.cfg["source"]["db"],
                    "snapshot_counts": measured["counts"], "checksum": measured["checksum"]}
        manifest["counts"] = manifest.pop("snapshot_counts")
        os.replace(dump_path + ".part", dump_path)
        write_atomic(os.path.join(self.dir, name + ".sha256"), f"{sha256}  {dump_file}\n")
        write_atomic(os.path.join(self.dir, name + ".manifest.json"), json.dumps(manifest, indent=2) + "\n")
        result.update(name=name, file=dump_path, bytes=size, sha256=sha256,
                      rows=sum(measured["counts"].values()))
        log(f"{dump_file}: {format_bytes(size)}, sha256 {sha256[:16]}..., "
            f"{result['rows']} rows in {len(measured['counts'])} tables")
        t0 = time.time()
        offsite = self.offsite()
        if offsite:
            try:
                for filename in (dump_file, name + ".sha256", name + ".manifest.json"):
                    offsite.upload(os.path.join(self.dir, filename), sha256 if filename == dump_file else None)
                if offsite.size(dump_file) != size:
                    raise BackupError(f"off-site copy of {dump_file} has another size than the local file", "upload")
            except BackupError:
                raise
            except Exception as error:  # noqa: BLE001 - botocore's errors are many; the message says it
                raise BackupError(f"upload to s3://{offsite.bucket}/{offsite.key('')} failed: {error} "
                                  f"(the local backup {dump_file} is kept)", "upload") from None
            result["uploaded"] = True
            t0 = self._phase(result, "upload", t0)
            log(f"uploaded to s3://{offsite.bucket}/{offsite.key(dump_file)}")
        result["retention"] = self.apply_retention(offsite)
        self._phase(result, "retention", t0)

    def apply_retention(self, offsite, dry_run=False):
        summary = {}
        local_policy = self.cfg["retention"]["local"]
        keep, delete = retention_plan(self.local_backups(), **local_policy)
        backups = self.local_backups()
        for name in delete:
            for part in ("dump", "sha256", "manifest"):
                if backups[name].get(part) and not dry_run:
                    os.unlink(os.path.join(self.dir, backups[name][part]))
        summary["local"] = {"kept": len(keep), "deleted": delete}
        if offsite:
            try:
                remote = group_files(offsite.list(), self.prefix)
                keep_r, delete_r = retention_plan(remote, **self.cfg["retention"]["remote"])
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

    def _run_metrics(self, result):
        now = time.time()
        changes = {"last_run": now, "last_result": "success" if result["ok"] else result["reason"]}
        if result["ok"]:
            changes.update(last_success=now, last_size=result["bytes"], last_name=result["name"])
        with contextlib.suppress(OSError):
            self.save_state(**changes)
        state = self.state() or changes
        local = self.local_backups()
        values = {
            "last_run_timestamp_seconds": now,
            "last_success_timestamp_seconds": state.get("last_success", 0),
            "success": 1 if result["ok"] else 0,
            "duration_seconds": result.get("seconds", 0),
            "size_bytes": state.get("last_size", 0),
            "local_count": sum(1 for b in local.values() if is_complete(b)),
            "offsite_enabled": 1 if self.cfg["s3"].get("enabled") else 0,
            "upload_success": 1 if result.get("uploaded") else 0,
            "failure": [({"reason": reason}, 1 if (not result["ok"] and result["reason"] == reason) else 0)
                        for reason in ("disk", "database", "dump", "upload", "retention", "encryption", "error")],
        }
        with contextlib.suppress(OSError):
            self.write_metrics("run", values, {
                "last_run_timestamp_seconds": "When the backup job last ran.",
                "last_success_timestamp_seconds": "When a backup last completed (0: never).",
                "success": "1 if the last backup run succeeded.",
                "duration_seconds": "Duration of the last backup run.",
                "size_bytes": "Size of the last successful backup.",
                "local_count": "Complete backups on the host.",
                "offsite_enabled": "1 if backups are uploaded to S3-compatible storage.",
                "upload_success": "1 if the last run uploaded its backup off-site.",
                "failure": "1 for the reason the last backup run failed."})

    # -- fetching and checking a backup
    def resolve(self, name):
        """The local manifest and dump path of NAME (or the newest); fetched from off-site if needed."""
        local = {n: b for n, b in self.local_backups().items() if is_complete(b)}
        if name in (None, "", "latest"):
            candidates = dict(local)
            offsite = self.offsite()
            if offsite:
                try:
                    candidates.update({n: b for n, b in group_files(offsite.list(), self.prefix).items()
                                       if is_complete(b) and n not in local})
                except Exception as error:  # noqa: BLE001
                    if not local:
                        raise BackupError(f"no backup here and the off-site listing failed: {error}", "offsite") from None
                    log(f"off-site listing failed ({error}); using the newest backup on this host")
            if not candidates:
                raise BackupError(f"no complete backup in {self.dir}" + (" or off-site" if offsite else ""), "missing")
            name = max(candidates.values(), key=lambda b: b["time"])["name"]
        if name not in local:
            offsite = self.offsite()
            try:
                remote = group_files(offsite.list(), self.prefix) if offsite else {}
            except Exception as error:  # noqa: BLE001
                raise BackupError(f"{name} is not on this host and the off-site listing failed: {error}", "offsite") from None
            if name not in remote or not is_complete(remote[name]):
                raise BackupError(f"no complete backup named {name} here" + (" or off-site" if offsite else ""),
                                  "missing")
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            for part in ("dump", "sha256", "manifest"):
                target = os.path.join(self.dir, remote[name][part])
                offsite.download(remote[name][part], target + ".part")
                os.replace(target + ".part", target)
            log(f"fetched {name} from s3://{offsite.bucket}/{offsite.key('')}")
            local = self.local_backups()
        backup = local[name]
        with open(os.path.join(self.dir, backup["manifest"]), encoding="utf-8") as handle:
            manifest = json.load(handle)
        dump_path = os.path.join(self.dir, backup["dump"])
        actual = sha256_file(dump_path)
        if actual != manifest["sha256"]:
            raise BackupError(f"{backup['dump']} is damaged: sha256 {actual}, recorded {manifest['sha256']}", "checksum")
        return manifest, dump_path

    def stream_restore(self, dump_path, target_prefix, db, scratch=False):
        """decrypt | zstd -d | pg_restore into db. A scratch server lacks the live roles: no owners, no grants."""
        commands = [c for c in (decrypt_command(self.cfg), ["zstd", "-q", "-d", "-c"]) if c]
        restore = target_prefix + ["pg_restore", "--exit-on-error", "-U", self.cfg["source"]["user"], "-d", db]
        if scratch:
            restore[-4:-4] = ["--no-owner", "--no-privileges"]
        err = tempfile.TemporaryFile()
        sink = subprocess.Popen(restore, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        try:
            run_pipeline(commands, source_path=dump_path, sink_stdin=sink.stdin)
        except BrokenPipeError:
            pass  # pg_restore stopped reading: its own exit code and message say why
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.stdin.close()
            code = sink.wait()
        if code != 0:
            err.seek(0)
            raise BackupError(f"pg_restore exited {code}: {err.read().decode(errors='replace').strip()[-500:]}",
                              "restore")

    def scratch_image(self):
        """The image of the scratch server: the PostgreSQL container's own (same major version)."""
        if self.verify_cfg.get("image"):
            return self.verify_cfg["image"]
        inspect = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", self.cfg["source"]["container"]],
                                 capture_output=True, text=True, check=False)
        if inspect.returncode != 0:
            raise BackupError(f"cannot tell the image of {self.cfg['source']['container']}: {inspect.stderr.strip()}",
                              "verify")
        return inspect.stdout.strip()

    # -- verify
    def verify(self, name):
        started = time.time()
        result = {"ok": False, "phases": {}}
        container = f"freshtrack-backup-verify-{os.getpid()}"
        try:
            manifest, dump_path = self.resolve(name)
            result.update(name=manifest["name"], created=manifest["created"])
            t0 = self._phase(result, "fetch_check", started)
            user, db = self.cfg["source"]["user"], self.cfg["source"]["db"]
            # A scratch server: no network, data in tmpfs-free container storage, removed afterwards.
            subprocess.run(["docker", "run", "-d", "--rm", "--name", container, "--network", "none",
                            "--label", "org.freshtrack.purpose=backup-verify",
                            "-e", "POSTGRES_PASSWORD=verify-only", "-e", f"POSTGRES_USER={user}",
                            "-e", f"POSTGRES_DB={db}", self.scratch_image()],
                           check=True, capture_output=True, timeout=120)
            deadline = time.time() + 120
            while subprocess.run(["docker", "exec", container, "pg_isready", "-q", "-h", "127.0.0.1", "-U", user],
                                 check=False, capture_output=True).returncode != 0:
                if time.time() > deadline:
                    raise BackupError("the scratch PostgreSQL did not start within 120 s", "verify")
                time.sleep(0.5)
            t0 = self._phase(result, "scratch_server", t0)
            self.stream_restore(dump_path, ["docker", "exec", "-i", container], db, scratch=True)
            t0 = self._phase(result, "restore", t0)
            scratch = Postgres({"mode": "container", "container": container, "user": user, "db": db}, None)
            actual = scratch.measure(self.verify_cfg)
            self._phase(result, "compare", t0)
            problems = compare_manifest(manifest, actual)
            result.update(rows=sum(actual["counts"].values()), tables=len(actual["counts"]),
                          checksum_rows=(actual["checksum"] or {}).get("rows"), problems=problems)
            if problems:
                raise BackupError(f"restore of {manifest['name']} differs from its manifest: {'; '.join(problems)}",
                                  "mismatch")
            result.update(ok=True, reason="")
            log(f"verified {manifest['name']}: {result['rows']} rows in {result['tables']} tables and the "
                f"checksum over {result['checksum_rows']} recent readings match the dump")
        except subprocess.CalledProcessError as error:
            result.update(reason="verify", error=f"{' '.join(error.cmd[:3])}: "
                          f"{(error.stderr or b'').decode(errors='replace').strip()[-300:]}")
        except BackupError as error:
            result.update(reason=error.reason, error=str(error))
        except Exception as error:  # noqa: BLE001 - any failure must reach the metric and the exit code
            result.update(reason="error", error=f"{type(error).__name__}: {error}")
        finally:
            subprocess.run(["docker", "rm", "-f", "-v", container], check=False, capture_output=True)
            result["seconds"] = round(time.time() - started, 2)
            self._verify_metrics(result)
        if not result["ok"]:
            log(f"verification FAILED: {result.get('error')}")
        return result

    def _verify_metrics(self, result):
        now = time.time()
        changes = {"verify_last_run": now, "verify_last_result": "success" if result["ok"] else result["reason"]}
        if result["ok"]:
            changes["verify_last_success"] = now
        with contextlib.suppress(OSError):
            self.save_state(**changes)
        state = self.state() or changes
        with contextlib.suppress(OSError):
            self.write_metrics("verify", {
                "last_run_timestamp_seconds": now,
                "last_success_timestamp_seconds": state.get("verify_last_success", 0),
                "success": 1 if result["ok"] else 0,
                "duration_seconds": result["seconds"],
                "restored_rows": result.get("rows", 0),
            }, {"last_run_timestamp_seconds": "When the restore verification last ran.",
                "last_success_timestamp_seconds": "When a restore verification last matched its manifest.",
                "success": "1 if the last restore verification matched the dump's counts and checksum.",
                "duration_seconds": "Duration of the last restore verification.",
                "restored_rows": "Rows the last verification restored."})

    # -- restore into the live server
    def restore(self, name):
        started = time.time()
        result = {"phases": {}}
        manifest, dump_path = self.resolve(name)
        result.update(name=manifest["name"], created=manifest["created"])
        t0 = self._phase(result, "fetch_check", started)
        src = self.cfg["source"]
        pg = Postgres(src, tempfile.mkdtemp(prefix="freshtrack-restore-"))
        try:
            db, admin_db = src["db"], src.get("maintenance_db", "postgres")
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
            scratch, previous = f"{db}_restore_{stamp}", f"{db}_before_restore_{stamp}"
            pg.psql(f'CREATE DATABASE "{scratch}";', db=admin_db)
            try:
                self.stream_restore(dump_path, pg.prefix(), scratch)
                t0 = self._phase(result, "restore", t0)
                problems = compare_manifest(manifest, pg.measure(self.verify_cfg, db=scratch))
                if problems:
                    raise BackupError(f"restored copy differs from the manifest: {'; '.join(problems)}", "mismatch")
                t0 = self._phase(result, "compare", t0)
            except BaseException:
                pg.psql(f'DROP DATABASE IF EXISTS "{scratch}";', db=admin_db, check=False)
                raise
            # The swap: the live database keeps its data under another name (never dropped here).
            pg.psql(f"""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                        WHERE datname = '{db}' AND pid <> pg_backend_pid();
                        ALTER DATABASE "{db}" RENAME TO "{previous}";
                        ALTER DATABASE "{scratch}" RENAME TO "{db}";""", db=admin_db)
            self._phase(result, "swap", t0)
        finally:
            shutil.rmtree(pg.workdir, ignore_errors=True)
        result.update(ok=True, previous_database=previous, seconds=round(time.time() - started, 2),
                      rows=sum(manifest["counts"].values()))
        log(f"restored {manifest['name']} into {db} ({result['rows']} rows, counts and checksum match); "
            f"the database it replaced is kept as {previous}")
        return result

    def listing(self):
        local = self.local_backups()
        offsite = self.offsite()
        remote = group_files(offsite.list(), self.prefix) if offsite else {}
        rows = []
        for name in sorted(set(local) | set(remote), reverse=True):
            backup = local.get(name) or remote[name]
            rows.append({"name": name, "time": backup["time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "local": is_complete(local.get(name, {})), "offsite": is_complete(remote.get(name, {}))})
        return rows


def load_config(path):
    with open(path, encoding="utf-8") as handle:
        cfg = json.load(handle)
    for key in ("name", "dir", "source", "retention", "s3", "encryption", "compression", "verify",
                "lock_file", "state_file", "min_free_bytes"):
        if key not in cfg:
            raise BackupError(f"{path} lacks '{key}'", "config")
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(prog="freshtrack-backup", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="/etc/freshtrack/backup.json")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--label", default="scheduled")
    verify = sub.add_parser("verify")
    verify.add_argument("name", nargs="?")
    restore = sub.add_parser("restore")
    restore.add_argument("name")
    restore.add_argument("--confirm", action="store_true")
    sub.add_parser("list")
    retention = sub.add_parser("retention")
    retention.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    try:
        job = Job(load_config(args.config))
        if args.command == "run":
            result = job.run(args.label)
        elif args.command == "verify":
            result = job.verify(args.name)
        elif args.command == "restore":
            if not args.confirm:
                raise BackupError("restore replaces the live database: add --confirm", "usage")
            with job.lock():
                result = job.restore(args.name)
        elif args.command == "list":
            result = {"ok": True, "backups": job.listing()}
            if not args.json:
                for row in result["backups"]:
                    print(f"{row['name']}  local={'yes' if row['local'] else 'no'}  "
                          f"off-site={'yes' if row['offsite'] else 'no'}")
        else:
            with job.lock():
                result = {"ok": True, **job.apply_retention(job.offsite(), dry_run=args.dry_run)}
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
