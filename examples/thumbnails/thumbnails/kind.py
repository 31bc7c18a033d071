"""`thumbnails`: thumbnails of an uploaded image at several sizes, as one ZIP file.

A kind outside jobcast: it imports only jobcast's public API, and its package declares it in the
`jobcast.kinds` entry-point group (see pyproject.toml), so `jobcast web` and `jobcast worker`
find it once the package is installed beside jobcast.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from jobcast import JobContext, Kind, PermanentError


class ThumbnailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upload: str = Field(default="", description="Set by the server: the uploaded image (send it as `file`).")
    sizes: list[int] = Field(
        default=[64, 128, 256],
        min_length=1,
        max_length=8,
        description="The longest side of each thumbnail, in pixels.",
    )
    format: str = Field(default="PNG", pattern="^(PNG|JPEG|WEBP)$", description="PNG, JPEG or WEBP.")


def thumbnail(source: Path, size: int, fmt: str) -> bytes:
    """One thumbnail (in a thread: image work would stall the worker's event loop)."""
    try:
        with Image.open(source) as image:
            image.thumbnail((size, size))
            out = io.BytesIO()
            image.convert("RGB" if fmt == "JPEG" else image.mode).save(out, format=fmt)
            return out.getvalue()
    except UnidentifiedImageError:
        raise PermanentError("the upload is not an image") from None


async def run(ctx: JobContext, params: ThumbnailParams) -> dict[str, object]:
    if not params.upload:
        raise PermanentError("no image was uploaded")
    source = ctx.files.upload_path(params.upload)
    stem = Path(params.upload).stem
    name = f"{stem}-thumbnails.zip"
    sizes = sorted(set(params.sizes))
    with zipfile.ZipFile(ctx.files.result_path(name), "w") as archive:
        for done, size in enumerate(sizes, 1):
            data = await asyncio.to_thread(thumbnail, source, size, params.format)
            archive.writestr(f"{stem}-{size}.{params.format.lower()}", data)
            await ctx.progress.update(done, len(sizes), f"{size} px done")
    return {"sizes": sizes, "file": ctx.files.result_file(name, "application/zip")}


KIND = Kind(
    name="thumbnails",
    title="Thumbnails of an image",
    description="Resizes an uploaded image to several sizes and returns them as a ZIP file.",
    params=ThumbnailParams,
    run=run,
    takes_upload=True,
    max_attempts=2,
    timeout_s=120,
)
