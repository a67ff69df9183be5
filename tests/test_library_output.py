"""Other libraries' warnings and log records stay off the terminal unless --verbose or --debug:
standard error holds the program's own lines (PyTorch 2.14 made `torch.jit.load`, which
Silero VAD's loader calls on every run, warn with a FutureWarning; huggingface_hub logs each
retry)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

# the command line, with libraries that speak up while it runs: PyTorch's TorchScript loader
# (as from 2.14), the audio decoder, huggingface_hub's retries, and a library's own logger
NOISY_CLI = """
import logging, sys, warnings
import huggingface_hub, soundfile, torch

def noisy(original, category):
    def call(*args, **kwargs):
        warnings.warn(f"{original.__name__} is deprecated", category, stacklevel=2)
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        logging.getLogger("somelibrary").warning("somelibrary speaks")
        return original(*args, **kwargs)
    return call

torch.jit.load = noisy(torch.jit.load, FutureWarning)
soundfile.SoundFile = noisy(soundfile.SoundFile, FutureWarning)
from whisper_cli.cli import main
sys.argv[0] = "whisper-cli"
main()
"""


@pytest.fixture(scope="module")
def speech(audio_dir):
    return audio_dir / "en_ls_61-70968-0000.flac"  # 4.9 s


def run_noisy(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NOISY_CLI, *args], capture_output=True, text=True, timeout=600
    )


def test_library_warnings_and_logs_stay_off_standard_error(real_model_path, speech):
    args = ["transcribe", "-m", str(real_model_path), "-l", "en", "-f", "txt", "--stdout"]
    result = run_noisy([*args, str(speech)])
    assert result.returncode == 0, result.stderr
    assert "WIZARD" in result.stdout.upper()
    assert "Warning" not in result.stderr  # FutureWarning, DeprecationWarning, UserWarning
    assert "Retrying" not in result.stderr and "somelibrary" not in result.stderr
    assert result.stderr.strip() in ("", "1 transcribed, 0 failed")


def test_debug_shows_library_warnings_and_logs(real_model_path, speech):
    args = ["transcribe", "-m", str(real_model_path), "-l", "en", "-f", "txt", "--stdout"]
    result = run_noisy([*args, "--debug", str(speech)])
    assert result.returncode == 0, result.stderr
    assert "FutureWarning: SoundFile is deprecated" in result.stderr
    assert "Retrying in 1s" in result.stderr and "somelibrary speaks" in result.stderr


def test_loading_silero_vad_warns_of_nothing(monkeypatch):
    """The library itself stays quiet: PyTorch's deprecation of TorchScript, a
    DeprecationWarning up to 2.13 and a FutureWarning from 2.14, is not passed on."""
    import torch

    from whisper_cli.audio import vad

    load = torch.jit.load

    def deprecated_load(*args, **kwargs):
        warnings.warn("`torch.jit.load` is deprecated.", DeprecationWarning, stacklevel=2)
        warnings.warn("`torch.jit.load` is deprecated.", FutureWarning, stacklevel=2)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", deprecated_load)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vad._silero_jit()
    assert [str(w.message) for w in caught] == []
