"""Files that belong to jobs: one working directory per job (local.py) and where files are kept
between processes, a shared directory or S3-compatible object storage (storage.py)."""

from jobcast.deprecation import moved


def __getattr__(name: str) -> object:
    # This package was one module until 0.2.0: its names still resolve, with a warning.
    return moved(__name__, name, ("jobcast.files.local",))
