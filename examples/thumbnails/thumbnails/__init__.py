"""An example of a job kind that lives in its own package (see kind.py)."""
