"""`report`: a per-user activity report over a dataset the job builds, as CSV or HTML.

It stands for the classic "generate a report" job: one step per day of the period (where a real
deployment would query its database), then a file to download.
"""

from __future__ import annotations

import asyncio
import csv
import html
import random
import zlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from jobcast.kind import JobContext, Kind

ReportType = Literal["activity", "sales", "usage"]
METRICS: dict[str, tuple[str, ...]] = {
    "activity": ("logins", "sessions", "actions"),
    "sales": ("orders", "items", "revenue"),
    "usage": ("requests", "errors", "megabytes"),
}


class ReportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=64, description="Whose report this is.")
    report_type: ReportType = Field(default="activity", description="Which metrics the report shows.")
    days: int = Field(default=30, ge=1, le=366, description="How many days back the report covers.")
    format: Literal["csv", "html"] = Field(default="csv", description="The downloadable file's format.")
    pace_ms: int = Field(
        default=25, ge=0, le=10_000, description="Simulated data-source latency per day, in milliseconds."
    )


def day_rows(user_id: str, report_type: str, day: int) -> dict[str, float]:
    """One day's figures: the same for the same user, type and day, whenever it runs."""
    rng = random.Random(zlib.crc32(f"{user_id}/{report_type}/{day}".encode()))
    a, b, c = METRICS[report_type]
    first = rng.randint(0, 200)
    return {a: first, b: first * rng.randint(1, 5), c: round(first * rng.uniform(0.5, 20.0), 2)}


def render_html(title: str, header: list[str], rows: list[list[object]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"
    )


async def run(ctx: JobContext, params: ReportParams) -> dict[str, object]:
    metrics = list(METRICS[params.report_type])
    header = ["day", *metrics]
    rows: list[list[object]] = []
    totals = dict.fromkeys(metrics, 0.0)
    ctx.log.info("building the %s report of %s over %d days", params.report_type, params.user_id, params.days)
    for day in range(1, params.days + 1):
        if params.pace_ms:
            await asyncio.sleep(params.pace_ms / 1000)
        figures = day_rows(params.user_id, params.report_type, day)
        rows.append([day, *figures.values()])
        for name, value in figures.items():
            totals[name] += value
        await ctx.progress.update(day, params.days, f"day {day} of {params.days}")
    title = f"{params.report_type} report for {params.user_id}, last {params.days} days"
    name = f"report-{params.report_type}-{params.user_id}.{params.format}"
    path = ctx.files.result_path(name)
    if params.format == "csv":
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        content_type = "text/csv"
    else:
        path.write_text(render_html(title, header, rows))
        content_type = "text/html"
    ctx.log.info("wrote %s: %d rows", path.name, len(rows))
    return {
        "title": title,
        "totals": {k: round(v, 2) for k, v in totals.items()},
        "file": ctx.files.result_file(path.name, content_type),
    }


KIND = Kind(
    name="report",
    title="Report: a user's activity over a period",
    description="Builds a per-day report for one user and produces a CSV or HTML file to download.",
    params=ReportParams,
    run=run,
    max_attempts=3,
    timeout_s=600,
)
