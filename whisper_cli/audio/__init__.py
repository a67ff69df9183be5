"""Audio input: decoding files to 16-kHz mono samples (`decode`, `decoders`), and voice
activity (`vad`, imported on its own since it needs torch)."""

from whisper_cli.audio.decode import (
    BYTES_NAME,
    STDIN_NAME,
    AudioSource,
    AudioStream,
    DecodedAudio,
    audio_duration,
    decode_audio,
    iter_audio,
    load_audio,
)
from whisper_cli.audio.decoders import INSTALL_HINT, NO_AUDIO_STREAM

__all__ = [
    "BYTES_NAME",
    "INSTALL_HINT",
    "NO_AUDIO_STREAM",
    "STDIN_NAME",
    "AudioSource",
    "AudioStream",
    "DecodedAudio",
    "audio_duration",
    "decode_audio",
    "iter_audio",
    "load_audio",
]
