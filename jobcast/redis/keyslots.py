"""What a Redis Cluster deployment's settings need to know, without redis-py (which a client-only
install lacks): whether a URL names a cluster, and the hash tag of a key prefix."""

from __future__ import annotations

from urllib.parse import urlsplit

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def hash_tag(prefix: str) -> str:
    """The hash tag Redis Cluster hashes keys under `prefix` by (the text between its first `{`
    and the first `}` after it), or "" when it has none (Redis then hashes the whole key)."""
    start = prefix.find("{")
    end = prefix.find("}", start + 1)
    return prefix[start + 1 : end] if start >= 0 and end > start + 1 else ""
