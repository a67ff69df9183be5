"""What the two APIs take and give: request fields checked into the library's options, and
transcripts laid out as each API's JSON, with errors in OpenAI's shape."""

from __future__ import annotations

import io
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from whisper_cli.errors import OptionsError
from whisper_cli.options import TranscribeOptions, verify
from whisper_cli.writers import WriterOptions, finite, get_writer

if TYPE_CHECKING:
    from whisper_cli.results import Transcript

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")


class ApiError(Exception):
    """A request that cannot be served: its HTTP status and a one-line message."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        kind = {
            400: "invalid_request_error",
            401: "invalid_request_error",
            404: "invalid_request_error",
            413: "invalid_request_error",
            429: "rate_limit_error",
            503: "server_error",
        }.get(self.status, "server_error")
        return {
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        }


def bad(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


def choice(value: str | None, allowed: tuple[str, ...], param: str, default: str) -> str:
    if value is None or value == "":
        return default
    if value not in allowed:
        raise bad(param, f"{param} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def number(value: str | None, param: str, low: float, high: float) -> float | None:
    if value is None or value == "":
        return None
    try:
        parsed = float(value)
    except ValueError:
        raise bad(param, f"{param} must be a number, not {value!r}") from None
    if not (math.isfinite(parsed) and low <= parsed <= high):
        raise bad(param, f"{param} must be between {low:g} and {high:g}, not {value}")
    return parsed


def build_options(
    base: TranscribeOptions,
    *,
    task: str,
    language: str | None,
    prompt: str | None,
    temperature: float | None,
    words: bool,
    chunk_length: float | None = None,
) -> TranscribeOptions:
    """The server's options with a request's fields; `OptionsError` becomes a 400."""
    from whisper_cli.whisper.languages import language_code

    if language:
        try:
            language = language_code(language)
        except (OptionsError, ValueError, KeyError) as error:
            raise bad("language", str(error).splitlines()[0] or "unknown language") from None
    decoding = replace(base.decoding, task=task, language=language or None)
    options = replace(
        base,
        decoding=decoding,
        initial_prompt=prompt or None,
        word_timestamps=words,
        chunk_length=base.chunk_length if chunk_length is None else chunk_length,
    )
    if temperature is not None:
        # a temperature above 0 is sampled once, as OpenAI's API does; 0 keeps the fallback
        temps = base.temperatures if temperature == 0 else (temperature,)
        options = replace(options, temperatures=temps)
    try:
        verify(options)
    except OptionsError as error:
        raise bad("temperature", str(error)) from None
    return options


def written(transcript: Transcript, format_name: str) -> str:
    text = io.StringIO()
    get_writer(format_name, WriterOptions()).write(transcript, text)
    return text.getvalue()


def segment_dicts(transcript: Transcript) -> list[dict[str, Any]]:
    """The CLI's JSON segments, words left out (they go to `words`)."""
    return [
        {key: value for key, value in s.to_dict().items() if key != "words"}
        for s in transcript.segments
    ]


def word_dicts(transcript: Transcript, text_key: str = "word") -> list[dict[str, Any]]:
    return [
        {text_key: w.word.strip() if text_key == "text" else w.word, "start": w.start, "end": w.end}
        for s in transcript.segments
        for w in s.words or ()
    ]


def verbose_json(transcript: Transcript, task: str, granularities: tuple[str, ...]) -> dict:
    """OpenAI's verbose_json, with the CLI's JSON fields in each segment."""
    data: dict[str, Any] = {
        "task": task,
        "language": transcript.language,
        "duration": transcript.duration,
        "text": transcript.text,
        "model": transcript.model,
    }
    if transcript.language_probability is not None:
        data["language_probability"] = transcript.language_probability
    if "segment" in granularities or "word" not in granularities:
        data["segments"] = segment_dicts(transcript)
    if "word" in granularities:
        data["words"] = word_dicts(transcript)
    return finite(data)
