"""Files that belong to jobs: one working directory per job (local.py) and where files are kept
between processes, a shared directory or S3-compatible object storage (storage.py)."""
