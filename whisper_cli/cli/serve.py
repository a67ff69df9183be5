"""The `serve` command: OpenAI's and DeepInfra's speech APIs over HTTP, on one loaded model
(`whisper_cli.serve`, imported only when the command runs)."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from whisper_cli.cli.params import (
    DECODING,
    DEFAULT_MODEL,
    CacheDirOpt,
    ComputeTypeOpt,
    DebugOpt,
    DeviceOpt,
    ModelOpt,
    OfflineOpt,
    RevisionOpt,
    ThreadsOpt,
)
from whisper_cli.cli.run import ModelSettings
from whisper_cli.cli.ui import Ui

SERVER = "Server"
SERVER_PACKAGES = ("starlette", "uvicorn", "multipart")


def serve(
    model: ModelOpt = DEFAULT_MODEL,
    host: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS",
            help="The address to listen on; 0.0.0.0 opens the server to the network.",
            rich_help_panel=SERVER,
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, metavar="PORT", help="The TCP port.", rich_help_panel=SERVER
        ),
    ] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            envvar="WHISPER_CLI_API_KEY",
            help="Answer only requests with `Authorization: Bearer KEY` (default: any request).",
            rich_help_panel=SERVER,
        ),
    ] = None,
    max_upload_mb: Annotated[
        float,
        typer.Option(
            min=0.001, metavar="MB", help="The largest request body, in MB.", rich_help_panel=SERVER
        ),
    ] = 25.0,
    queue_size: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Requests waiting or in work at most; more are told to retry (429).",
            rich_help_panel=SERVER,
        ),
    ] = 64,
    allow_webhooks: Annotated[
        bool,
        typer.Option(
            "--allow-webhooks",
            help="Let DeepInfra-style requests name a webhook URL that the result is posted to.",
            rich_help_panel=SERVER,
        ),
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Windows decoded at once, from the requests in work (1: one request at a time).",
            rich_help_panel=DECODING,
        ),
    ] = 8,
    beam_size: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Beams of the beam search at temperature 0.",
            rich_help_panel=DECODING,
        ),
    ] = 5,
    pack: Annotated[
        bool,
        typer.Option(
            "--pack",
            help="Let short requests that name their language share 30-s windows: more "
            "requests a second, but each one's words may differ a little from its audio alone.",
            rich_help_panel=DECODING,
        ),
    ] = False,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = "auto",
    compute_type: ComputeTypeOpt = "auto",
    threads: ThreadsOpt = 0,
    debug: DebugOpt = False,
) -> None:
    """Serve OpenAI's and DeepInfra's speech-to-text APIs over HTTP, with one model in memory.

    Needs the server extra: `pip install '.[server]'` from the checkout. Routes:
    POST /v1/audio/transcriptions and /v1/audio/translations (OpenAI: file, model, language,
    prompt, temperature, response_format json|text|srt|verbose_json|vtt,
    timestamp_granularities[], stream), GET /v1/models, POST /v1/inference/{model}
    (DeepInfra: audio, task, language, initial_prompt, temperature, chunk_level, chunk_length_s,
    webhook) and GET /health. Any model name in a request is the served model.

    Concurrent requests with equal options share decoding batches, streamed or not; each gets
    the text `transcribe` gives for its file (with --pack, short ones with a language also
    share windows, as the short files of a folder do). A webhook gets the response posted once (10-s
    timeout), with --allow-webhooks only. Ctrl-C stops taking requests, answers those in work,
    and exits.

    Call it with curl: `curl -F file=@talk.mp3 -F model=whisper-1
    http://127.0.0.1:8000/v1/audio/transcriptions`, or with the openai package:
    `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY")`.
    """
    if pack and batch_size == 1:
        raise typer.BadParameter("it needs --batch-size 2 or more", param_hint="'--pack'")
    ui = Ui(debug=debug)
    missing = [name for name in SERVER_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        ui.fatal(
            f"serve needs {', '.join(missing)}: pip install '.[server]' in the whisper-cli checkout"
        )
    from dataclasses import replace

    from whisper_cli.options import DecodingOptions, TranscribeOptions
    from whisper_cli.serve.app import serve as run_server
    from whisper_cli.serve.handling import Settings

    settings = ModelSettings(model, revision, offline, cache_dir, device, compute_type, threads)
    with ui.fatal_errors():
        loaded = settings.load(ui)
    options = replace(
        TranscribeOptions(batch_size=batch_size),
        decoding=DecodingOptions(beam_size=beam_size, best_of=5),
    )
    served = Settings(
        model_name=loaded.name,
        base_options=options,
        api_key=api_key,
        max_upload_bytes=int(max_upload_mb * (1 << 20)),
        queue_limit=queue_size,
        pack=pack,
        allow_webhooks=allow_webhooks,
    )
    ui.notice(f"serving {loaded.name} on http://{host}:{port} (Ctrl-C stops)")
    run_server(loaded, served, host, port)
