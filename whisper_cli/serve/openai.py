"""OpenAI's speech API: POST /v1/audio/transcriptions and /v1/audio/translations (every
response_format, word and segment timestamps, stream=true as server-sent events) and
GET /v1/models. Any model name (whisper-1 included) is the served model."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from whisper_cli.errors import first_line
from whisper_cli.serve.handling import check_key, decode_upload, read_form, run_job, submit
from whisper_cli.serve.schemas import (
    GRANULARITIES,
    RESPONSE_FORMATS,
    ApiError,
    bad,
    build_options,
    choice,
    number,
    verbose_json,
    written,
)
from whisper_cli.serve.worker import Job

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

_MEDIA = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}


async def transcriptions(request: Request) -> Response:
    return await _speech(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _speech(request, "translate")


async def models(request: Request) -> Response:
    from starlette.responses import JSONResponse

    settings = request.app.state.settings
    check_key(request, settings)
    names = dict.fromkeys((settings.model_name, "whisper-1"))
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "whisper-cli"} for n in names]
    return JSONResponse({"object": "list", "data": data})


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise bad(name, f"{name} must be a form field, not a file")
    return value


async def _speech(request: Request, task: str) -> Response:
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse

    settings = request.app.state.settings
    check_key(request, settings)
    form = await read_form(request)
    response_format = choice(
        _field(form, "response_format"), RESPONSE_FORMATS, "response_format", "json"
    )
    granularities = tuple(
        choice(g, GRANULARITIES, "timestamp_granularities[]", "segment")
        for g in form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
        if isinstance(g, str)
    )
    if granularities and response_format != "verbose_json":
        raise bad("timestamp_granularities[]", "timestamp_granularities needs verbose_json")
    stream = (_field(form, "stream") or "false").lower()
    if stream not in ("true", "false"):
        raise bad("stream", f"stream must be true or false, not {stream!r}")
    language = _field(form, "language") if task == "transcribe" else None
    options = build_options(
        settings.base_options,
        task=task,
        language=language,
        prompt=_field(form, "prompt"),
        temperature=number(_field(form, "temperature"), "temperature", 0.0, 1.0),
        words="word" in granularities,
    )
    samples, _ = await decode_upload(form, "file")
    worker = request.app.state.worker
    if stream == "true":
        return StreamingResponse(
            _events(request, worker, samples, options), media_type="text/event-stream"
        )
    transcript = await run_job(request, worker, samples, options)
    if response_format == "json":
        return JSONResponse({"text": transcript.text})
    if response_format == "verbose_json":
        return JSONResponse(verbose_json(transcript, task, granularities or ("segment",)))
    text = transcript.text if response_format == "text" else written(transcript, response_format)
    return PlainTextResponse(text, media_type=_MEDIA[response_format])


async def _events(request: Request, worker: Any, samples: Any, options: Any) -> Any:
    """transcript.text.delta as segments are decoded, then transcript.text.done with the
    transcript's text: the text the request gets without stream (the same decode), which the
    deltas join to."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[Any] = asyncio.Queue()
    done = object()

    def on_segments(segments: list[Any]) -> None:
        loop.call_soon_threadsafe(arrived.put_nowait, segments)

    job = submit(worker, Job(samples, options, on_segments=on_segments))
    job.future.add_done_callback(lambda _: loop.call_soon_threadsafe(arrived.put_nowait, done))
    kept: list[Any] = []
    sent = ""
    try:
        while (item := await arrived.get()) is not done:
            for segment in item:  # a delta for each segment
                kept.append(segment)
                # the text so far, less a character whose last bytes the next segment brings
                text = worker.text_of(kept).rstrip("\ufffd")
                if text.startswith(sent) and len(text) > len(sent):
                    yield _sse({"type": "transcript.text.delta", "delta": text[len(sent) :]})
                    sent = text
        error = job.future.exception()
        if error is not None:
            yield _sse(ApiError(400, first_line(error)).body())
            return
        text = job.future.result().text
        if text.startswith(sent) and len(text) > len(sent):
            yield _sse({"type": "transcript.text.delta", "delta": text[len(sent) :]})
        yield _sse({"type": "transcript.text.done", "text": text})
    finally:  # the client went away (or all was sent): stop decoding for it
        job.cancelled = True


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
