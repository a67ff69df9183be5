"""`whisper-cli serve` on 127.0.0.1 with the small random model: both APIs, every response
format, streaming, errors (status, one line, no temporary file left), and batching."""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.server
import json
import os
import queue
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile

from tests.conftest import whole_recording
from tests.serve_helpers import free_port, running_server

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

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(spool))
        patch.setattr(engine, "speech_chunks", whole_recording)
        patch.setattr(batched, "speech_chunks", whole_recording)
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


# -- webhooks


@contextlib.contextmanager
def _receiver():
    """An HTTP server on 127.0.0.1 that keeps each POST (path, content type, body) and
    answers 204."""
    posts: list[tuple[str, str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append((self.path, self.headers["Content-Type"], body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{receiver.server_address[1]}/hook", posts
    finally:
        receiver.shutdown()
        receiver.server_close()


class _Hanging:
    """A receiver that accepts connections and never answers: each is held until the sender
    gives up (closes it) or `release` closes it."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.accepted = 0
        self.closed_by_sender = 0
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.accepted += 1
            threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _hold(self, connection):
        with connection:
            connection.settimeout(0.1)
            while not self.released.is_set():
                try:
                    if connection.recv(65536) == b"":  # the sender closed it
                        self.closed_by_sender += 1
                        return
                except TimeoutError:
                    continue
                except OSError:
                    return

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        self.listener.close()


def _wait_until(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _infer(url: str, wav: Path, timeout: float = 120, **fields) -> httpx.Response:
    with wav.open("rb") as audio:
        return httpx.post(
            f"{url}/v1/inference/openai/whisper-large-v3",
            files={"audio": audio},
            data=fields,
            timeout=timeout,
        )


def test_a_webhook_gets_the_response_once(server, tiny_model, wav, spool):
    with running_server(tiny_model, allow_webhooks=True) as url, _receiver() as (hook, posts):
        answer = _infer(url, wav, webhook=hook)
        assert answer.status_code == 200, answer.text
        assert _wait_until(lambda: posts)
        path, content_type, body = posts[0]
        assert path == "/hook" and content_type == "application/json"
        assert json.loads(body) == answer.json()  # the same JSON, request_id included
        # a receiver that is not there: the request is answered all the same
        nobody = f"http://127.0.0.1:{free_port()}/hook"
        assert _infer(url, wav, webhook=nobody).status_code == 200
        assert _infer(url, wav, webhook="ftp://127.0.0.1/hook").status_code == 400
        time.sleep(0.5)
        assert len(posts) == 1  # one post per webhook: none again
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert list(spool.iterdir()) == []


def test_hanging_webhooks_hold_up_no_request_and_are_tried_once(server, tiny_model, wav):
    """Webhook receivers that never answer: the requests that named them, and the requests
    after them, are answered while they hang (on the threads the uploads are read on they
    would hold every request up); each webhook is one connection, never tried again."""
    hanging = _Hanging()
    try:
        with running_server(tiny_model, allow_webhooks=True, webhook_timeout=300) as url:
            count = 10
            for _ in range(count):
                assert _infer(url, wav, timeout=60, webhook=hanging.url).status_code == 200
            assert _infer(url, wav, timeout=60).status_code == 200
            assert 1 <= hanging.accepted <= 4  # the webhook threads, each holding one
            hanging.release()  # the senders fail, and those waiting are sent
            assert _wait_until(lambda: hanging.accepted == count)
            time.sleep(1.0)
            assert hanging.accepted == count
    finally:
        hanging.close()


def test_a_webhook_gives_up_after_its_timeout(server, tiny_model, wav):
    hanging = _Hanging()
    try:
        with running_server(tiny_model, allow_webhooks=True, webhook_timeout=0.5) as url:
            assert _infer(url, wav, webhook=hanging.url).status_code == 200
            assert _wait_until(lambda: hanging.closed_by_sender == 1)
            time.sleep(1.0)
            assert hanging.accepted == 1
    finally:
        hanging.close()


# -- many clients at once


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tones(folder: Path, count: int) -> list[Path]:
    """`count` different recordings, 1 to 3 s of a tone and noise."""
    paths = []
    for index in range(count):
        rng = np.random.default_rng(index)
        t = np.arange(16000 + 4000 * index) / 16000
        samples = 0.3 * np.sin(2 * np.pi * (200 + 40 * index) * t)
        samples += 0.05 * rng.standard_normal(len(t))
        paths.append(folder / f"tone{index}.wav")
        soundfile.write(paths[-1], samples.astype(np.float32), 16000)
    return paths


def _ask(client, path: Path, kind: str) -> str:
    language = {"detect": openai.NOT_GIVEN}.get(kind, "en")
    with path.open("rb") as audio:
        if kind != "stream":
            return client.audio.transcriptions.create(model="x", file=audio, language=language).text
        events = list(
            client.audio.transcriptions.create(
                model="x", file=audio, language=language, stream=True
            )
        )
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert events[-1].type == "transcript.text.done" and deltas == events[-1].text
    return events[-1].text


def test_many_clients_at_once_get_what_each_gets_alone(server, client, tmp_path, monkeypatch):
    """16 clients, two requests each: streamed or not, language given or detected, each gets
    the text its request gets alone (streamed: the text it gets unstreamed), and the server
    still serves; the decoding batches held windows of several requests."""
    from whisper_cli.whisper import engine

    rows = []
    run = engine.DecodingTask.run

    def counted(self, features, *args, **kwargs):
        rows.append(len(features))
        return run(self, features, *args, **kwargs)

    paths = _tones(tmp_path, 3)
    alone = {(p, k): _ask(client, p, k) for p in paths for k in ("en", "detect")}
    monkeypatch.setattr(engine.DecodingTask, "run", counted)
    kinds = ("en", "stream", "detect")
    asked = [(paths[i % 3], kinds[i // 3 % 3]) for i in range(32)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        texts = list(pool.map(lambda request: _ask(client, *request), asked))
    for (path, kind), text in zip(asked, texts, strict=True):
        assert text == alone[path, "detect" if kind == "detect" else "en"], (path.name, kind)
    assert max(rows) > 1


def test_with_pack_requests_read_together_share_windows(
    tiny_model, spool, tmp_path, monkeypatch, packed_windows
):
    """`serve --pack`: requests with a language that wait together are packed into windows;
    each still gets its own transcript, on its own clock, and an upload that does not decode
    among them only its own 400. Without a language, none is packed."""
    from whisper_cli.whisper import engine

    monkeypatch.setattr(engine, "speech_chunks", whole_recording)
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    paths = _tones(tmp_path, 4)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + b"\0" * 40)  # a WAV header cut short

    def ask(path: Path, language: str | None) -> httpx.Response:
        with path.open("rb") as audio:
            fields = {"response_format": "verbose_json"}
            if language is not None:
                fields["language"] = language
            return httpx.post(
                f"{url}/v1/audio/transcriptions",
                files={"file": (path.name, audio)},
                data=fields,
                timeout=120,
            )

    with running_server(tiny_model, pack=True) as url:
        for language in ("en", None):
            packed_windows.clear()
            asked = [*paths, bad, *paths]
            with concurrent.futures.ThreadPoolExecutor(9) as pool:
                responses = list(pool.map(ask, asked, [language] * 9))
            failed = responses.pop(4)
            assert failed.status_code == 400
            message = failed.json()["error"]["message"]
            assert "bad.wav" in message and "\n" not in message
            for path, response in zip(paths * 2, responses, strict=True):
                assert response.status_code == 200, response.text
                answer = response.json()
                duration = soundfile.info(path).duration
                assert answer["duration"] == pytest.approx(duration, abs=0.01)
                assert all(0 <= s["start"] <= s["end"] <= duration for s in answer["segments"])
            assert (max(packed_windows, default=0) > 1) is (language is not None), language
    assert list(spool.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_memory_stays_flat_over_many_requests(server, tiny_model, tmp_path):
    """20-s uploads (what a request holds: its samples, features, encoder output: megabytes):
    the server's memory after 32 more requests is what it was after the first 8."""
    rng = np.random.default_rng(1)
    t = np.arange(20 * 16000) / 16000
    samples = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(len(t))
    path = tmp_path / "long.wav"
    soundfile.write(path, samples.astype(np.float32), 16000, subtype="PCM_16")
    with running_server(tiny_model) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)

        def one(_: int) -> str:
            with path.open("rb") as audio:
                return client.audio.transcriptions.create(model="x", file=audio).text

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            first = set(pool.map(one, range(8)))  # warm: the allocator's arenas, caches
            before = _resident_bytes()
            later = set(pool.map(one, range(32)))
        grown = _resident_bytes() - before
    assert first == later and len(first) == 1
    assert grown < 32 << 20, f"resident memory grew {grown >> 20} MiB over 32 requests"


def test_the_readme_examples_run(server, client, wav):
    """The Serve section's curl commands and Python example, pointed at this server."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Serve\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    (shell,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    (python,) = re.findall(r"```python\n(.*?)```", section, re.S)

    def here(text: str) -> str:
        text = text.replace("http://127.0.0.1:8000", server).replace("secret", KEY)
        return text.replace("talk.mp3", str(wav))

    code = here(python).replace('api_key="', 'max_retries=0, api_key="')
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 (our own README)
    commands = shell.replace("\\\n", " ").splitlines()
    assert commands[0].startswith("whisper-cli serve")
    curls = [shlex.split(here(line)) for line in commands if line.startswith("curl")]
    assert len(curls) == 2
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    for curl in curls:
        done = subprocess.run([*curl, "-sS", "-f"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()


def test_the_command_says_what_it_serves_and_stops_on_ctrl_c(tiny_checkpoint, wav):
    """`whisper-cli serve` as a user starts it: one line on stderr naming the model and the
    address, requests answered, and Ctrl-C (SIGINT) ends it cleanly."""
    import signal

    port = free_port()
    command = [sys.executable, "-m", "whisper_cli", "serve", "-m", str(tiny_checkpoint)]
    command += ["--port", str(port), "--device", "cpu", "--threads", "1"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as server:
        try:
            assert _wait_until(lambda: _healthy(port), 120), "the server did not start"
            with wav.open("rb") as audio:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/v1/audio/transcriptions",
                    files={"file": ("tone.wav", audio)},
                    data={"language": "en", "temperature": "0"},
                    timeout=120,
                )
            assert answer.status_code == 200, answer.text
        finally:
            server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    address = f"http://127.0.0.1:{port}"
    assert stderr.splitlines()[0] == f"serving {tiny_checkpoint} on {address} (Ctrl-C stops)"
    assert "Traceback" not in stderr


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
