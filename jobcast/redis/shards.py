"""Shards: one deployment's keys spread over several hash tags, so over several primaries of a
Redis Cluster.

Each shard is a whole jobcast keyspace under a prefix of its own (its record, history, output and
channel keys per job, and its own queues, indexes, feeds and counters), so every script still
runs on one slot, and a job's events are still written and published by one script. What spans
shards is routing, not Redis: a job's id says which shard holds it.

- **Prefixes.** Shard 0 keeps the deployment's prefix (`{jobcast}` on a cluster, `jobcast` on one
  server): a deployment that had one shard finds its jobs where they were. Shard k's tag is the
  deployment's tag (or its whole prefix) with `~k` and, when needed, a salt after it, chosen so
  that each shard's slot is in its own of the ring's N equal parts (shard 0's where its tag
  hashes, the others in the middle of theirs): on a cluster whose primaries serve equal slot
  ranges, as many shards as primaries land one on each.
- **Ids.** A job of a sharded deployment gets a version-8 UUID (RFC 9562: the layout is the
  vendor's) whose first byte is its shard; the rest is random (114 bits). Ids stay 32 hex digits,
  as the API promises. A version-4 id, as one-shard deployments make, is shard 0's.
- **Which shard.** A job goes to its owner's shard (a hash of the owner), so what is counted per
  owner (owner limits, quotas, fair turns, the owner's feed and listing) stays exact; a tree's
  children go with their parent; jobs without an owner go to the shards in turn.

docs/architecture.md#shards has the layout; docs/scaling.md what it is for.
"""

from __future__ import annotations

import itertools
import os
import zlib
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from jobcast.redis.keyslots import hash_tag

MAX_SHARDS = 256  # the id's first byte
# How close to its place on the slot ring a shard's slot must be, as a share of the spacing.
_SLACK = 0.125


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard of a deployment: its number (in its jobs' ids) and its keys' prefix."""

    number: int
    prefix: str


def shard_prefixes(prefix: str, shards: int) -> list[str]:
    """Each shard's key prefix, shard 0's being `prefix` itself. On a cluster the prefix carries a
    hash tag (`{jobcast}`); on one server it need not (`jobcast`: a deployment that grows from one
    shard keeps its keys), and the other shards' tags are made from the whole prefix."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be 1 to {MAX_SHARDS}, not {shards}")
    if shards == 1:
        return [prefix]
    tag = hash_tag(prefix) or prefix
    spacing = REDIS_CLUSTER_HASH_SLOTS / shards
    # Shard 0's slot is wherever the deployment's tag hashes; it is in one of the ring's `shards`
    # equal parts, and each other shard takes the middle of another part. A cluster whose
    # primaries serve equal ranges (as `redis-cli --cluster create` splits them) then serves each
    # shard from a primary of its own; spacing from shard 0's slot instead would not, when it
    # lies near a range's edge.
    first_part = int(key_slot(tag.encode()) // spacing)
    prefixes = [prefix]
    for k in range(1, shards):
        aim = (((first_part + k) % shards) + 0.5) * spacing
        for salt in itertools.count():
            candidate = f"{tag}~{k}" + (f"~{salt}" if salt else "")
            off = abs(key_slot(candidate.encode()) - aim)
            if min(off, REDIS_CLUSTER_HASH_SLOTS - off) <= _SLACK * spacing:
                break
        tagged = "{" + candidate + "}"
        prefixes.append(prefix.replace("{" + tag + "}", tagged, 1) if hash_tag(prefix) else tagged)
    return prefixes


def shards_of(prefix: str, shards: int) -> list[Shard]:
    return [Shard(k, p) for k, p in enumerate(shard_prefixes(prefix, shards))]


# A random 128-bit number made a version-8 UUID with its first byte the shard.
_V8_CLEAR = ~((0xFF << 120) | (0xF000 << 64) | (0xC000 << 48))
_V8_SET = (0x8000 << 64) | (0x8000 << 48)


def sharded_job_ids(count: int, shard: int) -> list[str]:
    """New ids of jobs on `shard`: version-8 UUIDs as 32 hex digits, the first byte the shard."""
    raw = os.urandom(16 * count)
    numbers = (int.from_bytes(raw[at : at + 16]) for at in range(0, 16 * count, 16))
    return [f"{n & _V8_CLEAR | _V8_SET | shard << 120:032x}" for n in numbers]


def shard_of(job_id: str, shards: int) -> int | None:
    """The shard that holds `job_id`, or None when the id names a shard this deployment lacks (its
    job cannot exist here)."""
    if shards == 1 or job_id[12:13] != "8":
        return 0
    shard = int(job_id[:2], 16)
    return shard if shard < shards else None


def shard_of_owner(owner: str, shards: int) -> int:
    """An owner's shard: the same in every process (CRC-32, not Python's salted `hash`)."""
    return zlib.crc32(owner.encode()) % shards
