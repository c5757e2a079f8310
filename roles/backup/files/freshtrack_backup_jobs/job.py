"""What every command of the backup job shares: its configuration, the lock, the state file and
metrics, and fetching a backup (from off-site if needed) with its checksum checked."""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time

from .core import (BackupError, OffSite, decrypt_command, group_files, is_complete, log, render_metrics,
                   pipe_into, sha256_file, write_atomic)


class Job:
    """A configured backup job (/etc/freshtrack/backup.json); the commands are functions over it."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.dir = cfg["dir"]
        self.prefix = cfg["name"]
        self.verify_cfg = cfg["verify"]

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

    def phase(self, result, name, t0):
        result["phases"][name] = round(time.time() - t0, 2)
        return time.time()

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
        pipe_into(commands, dump_path, restore, "pg_restore")
