"""whisper-cli: OpenAI's Whisper speech recognition in plain PyTorch.

    >>> import whisper_cli
    >>> model = whisper_cli.load_model("base")
    >>> transcript = model.transcribe("talk.flac")
    >>> print(transcript.text)

The heavy modules (torch) load on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "load_audio", "TranscribeOptions", "DecodingOptions"]

if TYPE_CHECKING:
    from whisper_cli.audio import load_audio
    from whisper_cli.loading import load_model
    from whisper_cli.options import DecodingOptions, TranscribeOptions


def __getattr__(name: str) -> Any:
    if name in ("TranscribeOptions", "DecodingOptions"):
        from whisper_cli import options

        return getattr(options, name)
    if name == "load_model":
        from whisper_cli.loading import load_model

        return load_model
    if name == "load_audio":
        from whisper_cli.audio import load_audio

        return load_audio
    raise AttributeError(f"module 'whisper_cli' has no attribute {name!r}")
