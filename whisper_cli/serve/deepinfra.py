"""DeepInfra's speech API: POST /v1/inference/{model} (the name may hold slashes, as in
openai/whisper-large-v3, and is the served model) with a multipart `audio` file; with a
`webhook` (when the server allows them), the response is also posted to that URL."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from whisper_cli.errors import first_line
from whisper_cli.serve.handling import check_key, decode_upload, read_form, run_job
from whisper_cli.serve.schemas import ApiError, bad, build_options, choice, number
from whisper_cli.writers import finite

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from whisper_cli.results import Transcript


async def inference(request: Request) -> Response:
    from starlette.responses import JSONResponse

    settings = request.app.state.settings
    check_key(request, settings)
    form = await read_form(request)

    def field(name: str) -> str | None:
        value = form.get(name)
        if value is not None and not isinstance(value, str):
            raise bad(name, f"{name} must be a form field, not a file")
        return value

    task = choice(field("task"), ("transcribe", "translate"), "task", "transcribe")
    chunk_level = choice(field("chunk_level"), ("segment", "word"), "chunk_level", "segment")
    chunk_length = number(field("chunk_length_s"), "chunk_length_s", 1, 30)
    if chunk_length not in (None, 30.0) and settings.base_options.batch_size == 1:
        raise bad(
            "chunk_length_s",
            "chunk_length_s below 30 needs batched decoding: start the server with --batch-size 2 "
            "or more",
        )
    webhook = field("webhook") or None
    if webhook is not None:
        if not settings.allow_webhooks:
            raise bad("webhook", "webhooks are off: start the server with --allow-webhooks")
        if not webhook.startswith(("http://", "https://")):
            raise bad("webhook", f"webhook must be an http(s) URL, not {webhook!r}")
    options = build_options(
        settings.base_options,
        task=task,
        language=field("language"),
        prompt=field("initial_prompt"),
        temperature=number(field("temperature"), "temperature", 0.0, 1.0),
        words=chunk_level == "word",
        chunk_length=chunk_length,
    )
    samples, _ = await decode_upload(form, "audio")
    started = time.monotonic()
    transcript = await run_job(request, request.app.state.worker, samples, options)
    body = response(transcript, chunk_level, time.monotonic() - started)
    if webhook is not None:
        request.app.state.webhooks.post(webhook, body)
    return JSONResponse(body)


def response(transcript: Transcript, chunk_level: str, runtime: float) -> dict[str, Any]:
    segments = [
        {"id": s.id, "text": s.text, "start": s.start, "end": s.end} for s in transcript.segments
    ]
    words = []
    if chunk_level == "word":
        words = [
            {"text": w.word.strip(), "start": w.start, "end": w.end}
            for s in transcript.segments
            for w in s.words or ()
        ]
    return finite(
        {
            "text": transcript.text,
            "segments": segments,
            "language": transcript.language,
            "input_length_ms": round(transcript.duration * 1000),
            "words": words,
            "duration": transcript.duration,
            "request_id": uuid.uuid4().hex,
            "inference_status": {
                "status": "succeeded",
                "runtime_ms": round(runtime * 1000),
                "cost": 0.0,
                "tokens_generated": sum(len(s.tokens) for s in transcript.segments),
                "tokens_input": 0,
            },
        }
    )


_log = logging.getLogger("whisper_cli.serve")


class Webhooks:
    """Posts responses to webhook URLs, on threads of their own (a receiver that hangs holds up
    no request): one try each, `timeout` seconds at most per connect and read, no redirect
    followed; at most `limit` posts in work or waiting, more are dropped (and logged)."""

    def __init__(self, timeout: float, workers: int = 4, limit: int = 64):
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="whisper-cli-webhook")
        self._room = threading.BoundedSemaphore(limit)

    def post(self, url: str, body: dict[str, Any]) -> bool:
        """Queue the post; False when `limit` posts are already in work or waiting."""
        if not self._room.acquire(blocking=False):
            _log.warning("webhook %s dropped: too many webhooks in work", url)
            return False
        try:
            future = self._pool.submit(post_webhook, url, body, self.timeout)
        except RuntimeError:  # shut down
            self._room.release()
            return False
        future.add_done_callback(lambda _: self._room.release())
        return True

    def close(self) -> None:
        """Drop the posts that wait; those in work end within their timeout."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # one request per webhook: a redirect is a failure


def post_webhook(url: str, body: dict[str, Any], timeout: float) -> bool:
    """POST the response JSON to `url` once, with a timeout; a failure is logged, not retried
    (the client has the response already). True when the receiver answered 2xx."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout):  # http(s) only: checked before
            return True
    except Exception as error:
        _log.warning("webhook %s failed: %s", url, first_line(error))
        return False


__all__ = ["inference", "ApiError"]
