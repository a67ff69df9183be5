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
