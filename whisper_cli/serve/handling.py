"""What both APIs do with a request: the key, the upload (spooled to a temporary file that is
always removed, then decoded), and the job handed to the worker and awaited."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisper_cli.errors import AudioError, first_line
from whisper_cli.serve.schemas import ApiError
from whisper_cli.serve.worker import Busy, Job

if TYPE_CHECKING:
    import numpy as np
    from starlette.datastructures import FormData
    from starlette.requests import Request

    from whisper_cli.options import TranscribeOptions
    from whisper_cli.serve.worker import Worker

SPOOL_BLOCK = 1 << 20


@dataclass(frozen=True)
class Settings:
    """How the server was started."""

    model_name: str
    base_options: Any  # TranscribeOptions
    api_key: str | None = None
    max_upload_bytes: int = 25 << 20
    queue_limit: int = 64
    pack: bool = False  # short requests with a language share windows (`Worker`)
    allow_webhooks: bool = False
    webhook_timeout: float = 10.0


def check_key(request: Request, settings: Settings) -> None:
    """401 unless the request carries `Authorization: Bearer KEY` (any case) for the key the
    server was started with (none: every request passes)."""
    if settings.api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing API key: send Authorization: Bearer KEY", code="missing_key")
    if not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
        raise ApiError(401, "incorrect API key", code="invalid_api_key")


async def read_form(request: Request) -> FormData:
    try:
        return await request.form(max_files=2, max_fields=100)
    except ApiError:
        raise
    except Exception as error:  # a body that is not a multipart form
        raise ApiError(
            400, f"the body is not a valid multipart form: {first_line(error)}"
        ) from None


async def decode_upload(form: FormData, field: str) -> tuple[np.ndarray, str]:
    """The uploaded file in `field` as 16 kHz mono samples, and its name."""
    from starlette.datastructures import UploadFile

    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        raise ApiError(400, f"missing the audio file field {field!r}", param=field)
    name = Path(upload.filename or "upload").name or "upload"
    try:
        return await asyncio.to_thread(_spool_and_decode, upload, name), name
    finally:
        await upload.close()


def _spool_and_decode(upload: Any, name: str) -> np.ndarray:
    from whisper_cli.audio import decode_audio

    suffix = Path(name).suffix[:16]
    handle, path = tempfile.mkstemp(prefix="whisper-cli-serve-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as spooled:
            upload.file.seek(0)
            while block := upload.file.read(SPOOL_BLOCK):
                spooled.write(block)
        try:
            return decode_audio(path).samples
        except AudioError as error:
            raise ApiError(400, first_line(error).replace(path, name), "file") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


async def run_job(
    request: Request, worker: Worker, samples: np.ndarray, options: TranscribeOptions
) -> Any:
    """The transcript of `samples`, decoded by the worker with others; the job is dropped when
    the client goes away first."""
    job = submit(worker, Job(samples, options))
    return await wait_for(request, job)


def submit(worker: Worker, job: Job) -> Job:
    try:
        return worker.submit(job)
    except Busy:
        raise ApiError(
            429,
            f"the server is busy ({worker.limit} requests in work): try again later",
            code="queue_full",
            headers={"Retry-After": "1"},
        ) from None


async def wait_for(request: Request, job: Job) -> Any:
    waiting = asyncio.wrap_future(job.future)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        if done:
            break
        if await request.is_disconnected():
            job.cancelled = True
            waiting.cancel()
            raise ApiError(499, "the client went away")
    try:
        return waiting.result()
    except Busy:
        raise ApiError(503, "the server is stopping", headers={"Retry-After": "1"}) from None
    except ApiError:
        raise
    except Exception as error:  # the library's one-line reason
        raise ApiError(
            400 if isinstance(error, AudioError | ValueError) else 500, first_line(error)
        ) from None
