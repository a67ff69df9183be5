"""`whisper-cli serve` on 127.0.0.1 with the small random model: both APIs, every response
format, streaming, errors (status, one line, no temporary file left), and batching."""

from __future__ import annotations

import concurrent.futures
import json
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile

from tests.serve_helpers import running_server
from whisper_cli.constants import FRAMES_PER_SECOND

KEY = "test-key"


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    """Three seconds of a tone and noise, as a WAV file."""
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    samples = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(48000)
    path = tmp_path_factory.mktemp("serve") / "tone.wav"
    soundfile.write(path, samples.astype(np.float32), 16000)
    return path


@pytest.fixture(scope="module")
def spool(tmp_path_factory) -> Path:
    """The temporary folder the server spools uploads to (checked empty after each test)."""
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def server(tiny_model, spool):
    """The server, uploads spooled to `spool`; a tone holds no speech for the voice detector,
    so all of it is called speech, for the random-weight model to decode."""
    from whisper_cli.whisper import batched, engine

    def everything(detector, duration):
        return [(0, round(duration * FRAMES_PER_SECOND))]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(spool))
        patch.setattr(engine, "speech_chunks", everything)
        patch.setattr(batched, "speech_chunks", everything)
        with running_server(tiny_model, api_key=KEY, max_upload_bytes=200_000) as url:
            yield url


@pytest.fixture()
def client(server, spool):
    yield openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=120)
    assert list(spool.iterdir()) == []  # every upload's temporary file is gone
    assert httpx.get(f"{server}/health").json()["status"] == "ok"  # and it still serves


def test_every_response_format(client, wav):
    with wav.open("rb") as audio:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="verbose_json"
        )
    text = verbose.text
    assert verbose.duration == pytest.approx(3.0)
    segment = verbose.segments[0].model_dump()
    for key in ("avg_logprob", "compression_ratio", "no_speech_prob", "temperature"):
        assert key in segment
    with wav.open("rb") as audio:
        assert client.audio.transcriptions.create(model="x", file=audio).text == text
    with wav.open("rb") as audio:
        plain = client.audio.transcriptions.create(model="x", file=audio, response_format="text")
    assert plain.strip() == text.strip()
    with wav.open("rb") as audio:
        srt = client.audio.transcriptions.create(model="x", file=audio, response_format="srt")
    assert srt.startswith("1\n00:00:")
    with wav.open("rb") as audio:
        vtt = client.audio.translations.create(model="x", file=audio, response_format="vtt")
    assert vtt.startswith("WEBVTT")


def test_word_timestamps(client, wav):
    with wav.open("rb") as audio:
        verbose = client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert verbose.words and verbose.segments
    assert all(w.start <= w.end for w in verbose.words)


def test_streaming_deltas_join_to_the_done_text(client, wav):
    with wav.open("rb") as audio:
        events = list(client.audio.transcriptions.create(model="x", file=audio, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert deltas and events[-1].type == "transcript.text.done"
    assert "".join(deltas) == events[-1].text


def test_models_list(client):
    assert {"whisper-1", "tiny-random"} <= {m.id for m in client.models.list()}


@pytest.mark.parametrize(
    "content",
    [b"not audio at all" * 10, b"", b"RIFF\x24\x00\x00\x00WAVEfmt "],
    ids=["corrupt", "empty", "truncated"],
)
def test_audio_that_does_not_decode_is_a_bad_request(client, content):
    with pytest.raises(openai.BadRequestError) as raised:
        client.audio.transcriptions.create(model="x", file=("talk.wav", content))
    message = raised.value.body["message"]
    assert "\n" not in message and "Traceback" not in message
    assert "talk.wav" in message and "whisper-cli-serve" not in message


def test_a_wrong_field_is_a_bad_request(client, wav):
    with wav.open("rb") as audio, pytest.raises(openai.BadRequestError) as raised:
        client.audio.transcriptions.create(model="x", file=audio, response_format="docx")
    assert raised.value.body["param"] == "response_format"
    with wav.open("rb") as audio, pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(model="x", file=audio, language="klingon")
    with wav.open("rb") as audio, pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(model="x", file=audio, temperature=7)


def test_a_missing_or_wrong_key(server, client, wav):
    for key in ("wrong", None):
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        answer = httpx.post(f"{server}/v1/audio/transcriptions", headers=headers, timeout=30)
        assert answer.status_code == 401
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    wrong = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError), wav.open("rb") as audio:
        wrong.audio.transcriptions.create(model="x", file=audio)


def test_unknown_route_and_oversize_body(server, client):
    answer = httpx.get(f"{server}/v1/nothing", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 404 and "error" in answer.json()
    big = {"file": ("big.wav", b"\0" * 300_000)}
    answer = httpx.post(
        f"{server}/v1/audio/transcriptions",
        files=big,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert answer.status_code == 413
    assert "limit" in answer.json()["error"]["message"]


def _deepinfra_fields(body: dict) -> None:
    assert set(body) >= {"text", "segments", "language", "input_length_ms", "words"}
    assert set(body) >= {"duration", "request_id", "inference_status"}
    assert set(body["inference_status"]) == {
        "status",
        "runtime_ms",
        "cost",
        "tokens_generated",
        "tokens_input",
    }
    for segment in body["segments"]:
        assert set(segment) == {"id", "text", "start", "end"}


def test_deepinfra_route(server, client, wav):
    with wav.open("rb") as audio:
        answer = httpx.post(
            f"{server}/v1/inference/openai/whisper-large-v3",
            files={"audio": audio},
            data={"chunk_level": "word", "task": "transcribe"},
            headers={"Authorization": f"bearer {KEY}"},
            timeout=120,
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    _deepinfra_fields(body)
    assert body["input_length_ms"] == 3000
    assert body["words"] and set(body["words"][0]) == {"text", "start", "end"}
    with wav.open("rb") as audio:
        refused = httpx.post(
            f"{server}/v1/inference/whisper",
            files={"audio": audio},
            data={"webhook": "http://127.0.0.1:9/hook"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
    assert refused.status_code == 400 and "--allow-webhooks" in refused.text


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_on_the_deepinfra_route(server, client, wav):
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            f"Authorization: bearer {KEY}",
            "-F",
            f"audio=@{wav}",
            f"{server}/v1/inference/whisper-1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    _deepinfra_fields(json.loads(result.stdout))


def test_concurrent_requests_get_what_one_at_a_time_gets(server, client, wav):
    with wav.open("rb") as audio:
        alone = client.audio.transcriptions.create(model="x", file=audio).text

    def one(_: int) -> str:
        with wav.open("rb") as audio:
            return client.audio.transcriptions.create(model="x", file=audio).text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(one, range(8)))
    assert texts == [alone] * 8


def test_the_engine_decodes_eagerly_while_the_items_block(tiny_model):
    """A server's items arrive over time: with eager, a request is answered while the item
    iterator still waits for the next one (without it, the engine waits for a full batch)."""
    from tests.serve_helpers import base_options
    from whisper_cli.whisper.engine import transcribe_files
    from whisper_cli.whisper.transcribe import read_samples

    arrivals: queue.Queue = queue.Queue()
    arrivals.put(("a", np.zeros(16000, np.float32) + 0.01))

    def items():
        while (item := arrivals.get()) is not None:
            yield item

    stream = transcribe_files(tiny_model, items(), base_options(8), read_samples, eager=True)
    done: list = []
    thread = threading.Thread(target=lambda: done.append(next(stream)), daemon=True)
    thread.start()
    thread.join(60)
    arrivals.put(None)
    assert done and done[0].key == "a" and done[0].error is None
    thread.join(5)
    assert list(stream) == []
