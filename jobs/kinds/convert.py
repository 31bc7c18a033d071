"""`convert`: convert an uploaded CSV or JSON Lines file to JSON Lines, JSON or CSV.

Submitted as multipart/form-data with the file in a `file` part; the server stores the upload
and fills in `upload`. Progress is by bytes of input read.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobcast.kind import JobContext, Kind, PermanentError

Format = Literal["csv", "jsonl", "json"]
CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/jsonl", "json": "application/json"}
# Rows converted between yields to the event loop (and progress updates).
BATCH_ROWS = 2000


class ConvertParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upload: str = Field(
        default="",
        max_length=255,
        description="Set by the server: the uploaded file's name (send the file as `file`).",
    )
    from_format: Literal["csv", "jsonl"] | None = Field(
        default=None, description="The upload's format; by default taken from its name."
    )
    to: Format = Field(default="jsonl", description="The format to convert to.")
    pace_ms: int = Field(default=0, ge=0, le=10_000, description="Pause per batch of rows (for demos).")


def source_format(params: ConvertParams) -> str:
    if params.from_format:
        return params.from_format
    suffix = Path(params.upload).suffix.lower().lstrip(".")
    if suffix in ("csv", "jsonl"):
        return suffix
    if suffix in ("ndjson",):
        return "jsonl"
    raise PermanentError(f"cannot tell the format of {params.upload!r}; set from_format")


def read_rows(f: IO[str], fmt: str) -> Iterator[dict[str, Any]]:
    if fmt == "csv":
        yield from csv.DictReader(f)
        return
    for number, line in enumerate(f, 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError as e:
                raise PermanentError(f"line {number} is not JSON: {e}") from None
            if not isinstance(row, dict):
                raise PermanentError(f"line {number} is not a JSON object")
            yield row


class Writer:
    def __init__(self, out: IO[str], fmt: str) -> None:
        self.out, self.fmt = out, fmt
        self.csv: csv.DictWriter[str] | None = None
        self.count = 0

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self.out.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif self.fmt == "json":
            self.out.write(("[\n" if self.count == 0 else ",\n") + json.dumps(row, ensure_ascii=False))
        else:
            if self.csv is None:
                self.csv = csv.DictWriter(self.out, fieldnames=list(row), extrasaction="ignore")
                self.csv.writeheader()
            self.csv.writerow({k: v if isinstance(v, str) else json.dumps(v) for k, v in row.items()})
        self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("[]\n" if self.count == 0 else "\n]\n")


async def run(ctx: JobContext, params: ConvertParams) -> dict[str, object]:
    if not params.upload:
        raise PermanentError("no file was uploaded")
    source = ctx.files.upload_path(params.upload)
    fmt = source_format(params)
    name = f"{source.stem}.{params.to}"
    target = ctx.files.result_path(name)
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    ctx.log.info("reading %s as %s, to write %s", params.upload, fmt, name)

    def report(current: int, total: int, message: str) -> None:
        loop.call_soon_threadsafe(ctx.progress.report, current, total, message)

    # File I/O and parsing run in a thread, so a slow disk (or a network volume) never stalls the
    # worker's event loop; the thread checks `stop` between batches.
    thread = asyncio.ensure_future(asyncio.to_thread(convert_file, source, fmt, target, params, report, stop))
    try:
        rows = await asyncio.shield(thread)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait([thread])  # let the thread notice, then clean up after it
        target.unlink(missing_ok=True)
        raise
    except BaseException:
        target.unlink(missing_ok=True)  # leave no half-written result
        raise
    ctx.log.info("converted %d rows from %s to %s", rows, fmt, params.to)
    return {
        "rows": rows,
        "from": fmt,
        "to": params.to,
        "file": ctx.files.result_file(name, CONTENT_TYPES[params.to]),
    }


class Stopped(Exception):
    pass


def convert_file(
    source: Path,
    fmt: str,
    target: Path,
    params: ConvertParams,
    report: Callable[[int, int, str], None],
    stop: threading.Event,
) -> int:
    """The conversion itself, in a worker thread. Returns the number of rows."""
    if not source.is_file():
        raise PermanentError("the uploaded file is gone")
    total = source.stat().st_size
    with source.open("rb") as raw, target.open("w", newline="") as out:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = Writer(out, params.to)
        try:
            for row in read_rows(text, fmt):
                writer.write(row)
                if writer.count % BATCH_ROWS == 0:
                    report(raw.tell(), total, f"{writer.count} rows")
                    if stop.wait(params.pace_ms / 1000):
                        raise Stopped
        except (UnicodeDecodeError, csv.Error) as e:
            raise PermanentError(f"cannot read the upload: {e}") from None
        writer.close()
    report(total, total, f"{writer.count} rows")
    return writer.count


KIND = Kind(
    name="convert",
    title="Convert: CSV or JSON Lines to JSON Lines, JSON or CSV",
    description="Converts an uploaded file; send it as multipart/form-data with a `file` part.",
    params=ConvertParams,
    run=run,
    max_attempts=2,
    timeout_s=1800,
    takes_upload=True,
)
