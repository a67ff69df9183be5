"""A whisper-cli server on 127.0.0.1 and a free port, in a thread of the test process."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

from whisper_cli.options import DecodingOptions, TranscribeOptions


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def base_options(batch_size: int = 4, beam_size: int | None = None) -> TranscribeOptions:
    options = TranscribeOptions(batch_size=batch_size, temperatures=(0.0,))
    return replace(options, decoding=DecodingOptions(beam_size=beam_size))


@contextlib.contextmanager
def running_server(model, **settings) -> Iterator[str]:
    """The server's base URL while it runs; stopped (and its worker too) on leaving."""
    import uvicorn

    from whisper_cli.serve.app import create_app
    from whisper_cli.serve.handling import Settings

    settings.setdefault("model_name", "tiny-random")
    settings.setdefault("base_options", base_options())
    app = create_app(model, Settings(**settings))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
