"""The backup job's library: core.py (names, retention plan, manifests, metrics, the dump and
compression pipeline, PostgreSQL and S3 access), job.py (what every command shares: configuration,
lock, state, fetching and checking a backup), and one module per command: run, retention, verify,
restore, listing. freshtrack_backup.py is the command line."""
