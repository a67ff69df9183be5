"""`whisper-cli serve` end to end with the real base weights: one test per API, each
answering with the text the command line gives for the same file and options."""

from __future__ import annotations

import shutil
import subprocess
import sys

import openai
import pytest

from tests.serve_helpers import base_options, running_server

pytestmark = pytest.mark.real_model
FILE = "en_ls_61-70968-0000.flac"


def _cli_text(model_path, audio, *options: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "whisper_cli",
            "transcribe",
            "-m",
            str(model_path),
            "--device",
            "cpu",
            "-f",
            "txt",
            "--stdout",
            "-q",
            *options,
            str(audio),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return " ".join(result.stdout.split())


@pytest.fixture(scope="module")
def server(real_model):
    options = base_options(batch_size=8, beam_size=5)
    with running_server(real_model, model_name="base", base_options=options) as url:
        yield url


def test_openai_sdk_gets_the_cli_text(server, real_model_path, audio_dir):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0, timeout=300)
    with (audio_dir / FILE).open("rb") as audio:
        text = client.audio.transcriptions.create(
            model="whisper-1", file=audio, language="en", response_format="text"
        )
    expected = _cli_text(
        real_model_path,
        audio_dir / FILE,
        "-l",
        "en",
        "--batch-size",
        "8",
        "--temperature-increment-on-fallback",
        "0",
    )
    assert " ".join(text.split()) == expected
    assert "wizard" in expected.lower()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_on_the_deepinfra_route(server, audio_dir):
    import json

    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-F",
            f"audio=@{audio_dir / FILE}",
            "-F",
            "chunk_level=word",
            f"{server}/v1/inference/openai/whisper-base",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    body = json.loads(result.stdout)
    assert body["language"] == "en"
    assert "wizard" in body["text"].lower()
    assert body["words"] and body["segments"]
    assert body["input_length_ms"] == pytest.approx(4905, abs=1)


def _infer(server: str, audio, **fields) -> dict:
    import httpx

    with audio.open("rb") as upload:
        answer = httpx.post(
            f"{server}/v1/inference/openai/whisper-base",
            files={"audio": upload},
            data=fields,
            timeout=300,
        )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_chunk_length_s_is_the_longest_piece(server, audio_dir):
    """chunk_length_s cuts the audio into pieces of at most that long, as batched mode's
    chunks: no segment is longer (this file's second segment is 6 s by default); 30, the
    default, changes nothing."""
    audio = audio_dir / "en_ls_1995-1837-0001.wav"
    default = _infer(server, audio, language="en")
    assert max(s["end"] - s["start"] for s in default["segments"]) > 5
    same = _infer(server, audio, language="en", chunk_length_s="30")
    assert (same["text"], same["segments"]) == (default["text"], default["segments"])
    short = _infer(server, audio, language="en", chunk_length_s="3")
    assert len(short["segments"]) > len(default["segments"])
    assert all(s["end"] - s["start"] <= 3.0 + 0.02 for s in short["segments"])
    assert "sorrow" in short["text"] and "dreams" in short["text"]


def test_streamed_and_concurrent_requests_get_the_text_of_one_request_alone(
    server, audio_dir, real_model
):
    """A streamed request (the openai SDK, unmodified) among others with the same options:
    its deltas join to the done text, which is the text the request gets unstreamed and alone;
    the others get their text alone too (no request's text depends on what else is in work)."""
    import concurrent.futures

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0, timeout=300)
    streamed = audio_dir / "en_ls_1995-1837-0001.wav"
    others = [audio_dir / n for n in ("en_lj_LJ002-0020.wav", "en_ls_251-137823-0002.wav", FILE)]

    def stream() -> tuple[list[str], str]:
        with streamed.open("rb") as audio:
            events = list(
                client.audio.transcriptions.create(
                    model="whisper-1", file=audio, language="en", stream=True
                )
            )
        assert events[-1].type == "transcript.text.done"
        return [e.delta for e in events if e.type == "transcript.text.delta"], events[-1].text

    def text(path) -> str:
        with path.open("rb") as audio:
            return client.audio.transcriptions.create(
                model="whisper-1", file=audio, language="en"
            ).text

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        streaming = pool.submit(stream)
        texts = list(pool.map(text, others))
        deltas, done = streaming.result()
    for path, got in zip([streamed, *others], [done, *texts], strict=True):
        alone = real_model.transcribe(
            str(path), batch_size=8, beam_size=5, temperature=0.0, language="en"
        )
        assert got == alone.text, path.name
    assert len(deltas) >= 2 and "".join(deltas) == done


def test_packed_requests_keep_their_own_words(real_model, audio_dir, packed_windows):
    """`serve --pack`: short requests sent together share windows, and each answer still
    holds its own file's words (within a couple of words of the file alone), none of the
    others'."""
    import concurrent.futures
    import re

    names = ("en_lj_LJ002-0020.wav", "en_ls_251-137823-0002.wav", "en_pv_today_only_platforms.mp3")
    paths = [audio_dir / name for name in names] * 2

    def words(text: str) -> list[str]:
        return re.sub(r"[^\w\s']", " ", text.lower()).split()

    options = base_options(batch_size=8, beam_size=5)
    with running_server(real_model, model_name="base", base_options=options, pack=True) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=300)

        def ask(path) -> str:
            with path.open("rb") as audio:
                return client.audio.transcriptions.create(
                    model="whisper-1", file=audio, language="en"
                ).text

        with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
            texts = list(pool.map(ask, paths))
    assert max(packed_windows, default=0) > 1
    alone = {
        path: words(real_model.transcribe(str(path), batch_size=8, beam_size=5, language="en").text)
        for path in set(paths)
    }
    for path, text in zip(paths, texts, strict=True):
        got = words(text)
        assert len(set(alone[path]) ^ set(got)) <= 4, (path.name, text)
        assert abs(len(got) - len(alone[path])) <= 2, (path.name, text)
