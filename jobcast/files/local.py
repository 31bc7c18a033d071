"""Where uploads and result files live: one directory per job under `files_dir`.

Web servers write uploads there and serve results from there; workers read uploads and write
results. On one machine that is a local directory; on several, mount one shared volume (NFS, EFS,
a Kubernetes ReadWriteMany volume) at the same path everywhere. Job directories are swept once
they are older than the retention, like the job records in Redis.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, default: str = "file") -> str:
    """A file name that cannot leave its directory or surprise a shell or a browser."""
    name = _UNSAFE.sub("_", Path(name).name).strip("._")
    return name[:120] or default


@dataclass(frozen=True, slots=True)
class JobFiles:
    """One job's files."""

    root: Path

    @property
    def uploads(self) -> Path:
        return self.root / "upload"

    @property
    def results(self) -> Path:
        return self.root / "result"

    def upload_path(self, name: str) -> Path:
        return self.uploads / safe_name(name)

    def result_path(self, name: str) -> Path:
        self.results.mkdir(parents=True, exist_ok=True)
        return self.results / safe_name(name)

    def result_file(self, name: str, content_type: str) -> dict[str, Any]:
        """The `file` entry of a job's result, for a file written at result_path(name)."""
        path = self.results / safe_name(name)
        return {"name": path.name, "content_type": content_type, "size": path.stat().st_size}


def tree_size(directory: Path) -> int:
    """Bytes of the files under `directory` (0 if there is none)."""
    if not directory.is_dir():
        return 0
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def job(self, job_id: str) -> JobFiles:
        return JobFiles(self.root / job_id)

    def remove(self, job_ids: list[str]) -> None:
        """Delete these jobs' directories (jobs deleted before their retention ends)."""
        for job_id in job_ids:
            shutil.rmtree(self.root / job_id, ignore_errors=True)

    def sweep(self, retention_s: float) -> list[str]:
        """Delete job directories untouched for longer than the retention; the ids of the jobs
        whose directories went (their disk charges are to be refunded)."""
        if not self.root.is_dir():
            return []
        horizon = time.time() - retention_s
        removed = []
        for entry in self.root.iterdir():
            try:
                if entry.is_dir() and entry.stat().st_mtime < horizon:
                    shutil.rmtree(entry)
                    removed.append(entry.name)
            except OSError as e:
                log.warning("could not sweep %s: %s", entry, e)
        return removed
