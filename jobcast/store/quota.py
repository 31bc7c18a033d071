"""Each owner's disk quota: the bytes of their stored uploads and result files (and each anonymous
client address's, shared by the identities made there).

Web servers charge an upload once the owner is known; workers charge a result file once it is
written; the files' sweep refunds a job's charges when it deletes its directory. Charges are
counted in Redis (one hash of owners' totals, one of each job's charge), so every process of a
deployment sees one total. A retry's upload is a hard link to the original's and costs no disk,
but it is charged again: the quota counts what each job holds, so that deleting either job's
files refunds the right amount. In single-user mode every job belongs to one owner, and the quota
caps the total.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jobcast.errors import QuotaExceeded
from jobcast.store.scripts import Scripts, Status

SINGLE_USER = ""  # the owner's name in the counts when jobs have no owner


class DiskQuota:
    def __init__(self, scripts: Scripts, quota_bytes: int, owners_per_address: int) -> None:
        self.scripts = scripts
        self.quota_bytes = quota_bytes
        self.client_quota_bytes = quota_bytes * owners_per_address

    async def charge(self, job_id: str, owner: str | None, nbytes: int, client: str | None = None) -> int:
        """Charge `nbytes` to the owner (and to an anonymous owner's client address, `@<address>`)
        for this job; the owner's total after it. Raises QuotaExceeded (charging nothing) when it
        would take either over its quota."""
        args: dict[str, Any] = {"job": job_id, "owner": owner or SINGLE_USER, "bytes": nbytes}
        args["refund"] = False
        if client is not None:  # absent, not null: Lua's cjson null is truthy
            args["client"] = client
        answer = await self.scripts.call("quota", **args)
        if answer.status is Status.OVER_QUOTA:
            quota = self.client_quota_bytes if answer.get("client") else self.quota_bytes
            raise QuotaExceeded(answer["used"], nbytes, quota)
        return int(answer["used"])

    async def refund(self, job_ids: Iterable[str]) -> None:
        """Give back everything these jobs were charged (their files are gone)."""
        calls: list[tuple[dict[str, str], dict[str, Any]]] = [
            ({}, {"job": job_id, "owner": "", "bytes": 0, "refund": True}) for job_id in job_ids
        ]
        if calls:
            await self.scripts.call_many("quota", calls)
