"""DeepInfra's speech API: POST /v1/inference/{model} (the name may hold slashes, as in
openai/whisper-large-v3, and is the served model) with a multipart `audio` file."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any

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
    number(field("chunk_length_s"), "chunk_length_s", 1, 30)  # checked; chunks are 30 s
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
    )
    samples, _ = await decode_upload(form, "audio")
    started = time.monotonic()
    transcript = await run_job(request, request.app.state.worker, samples, options)
    body = response(transcript, chunk_level, time.monotonic() - started)
    if webhook is not None:
        asyncio.get_running_loop().run_in_executor(
            None, post_webhook, webhook, body, settings.webhook_timeout
        )
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


def post_webhook(url: str, body: dict[str, Any], timeout: float) -> None:
    """POST the response JSON to `url` once, with a timeout; a failure is dropped."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 (http(s) checked)
            pass
    except Exception:  # one try, no retries: the caller has the response already
        return


__all__ = ["inference", "ApiError"]
