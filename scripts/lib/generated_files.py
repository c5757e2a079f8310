"""Files generated from the repository's own sources (role READMEs, AWX surveys): written, or with
--check compared, each generator's way of keeping its output in step."""
from __future__ import annotations

import pathlib
import sys


def sync(wanted: dict[pathlib.Path, str], check: bool, command: str, root: pathlib.Path,
         unwanted: list[pathlib.Path] | None = None) -> int:
    """Write each file whose content differs (or, with check, name them and return 1)."""
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    names = [str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
             for path in stale + list(unwanted or [])]
    if check:
        if names:
            print(f"out of date (run {command}): " + ", ".join(names), file=sys.stderr)
            return 1
        return 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(root) if path.is_relative_to(root) else path}")
    return 0
