"""The `transcribe` and `translate` commands: their parameters, checked, become the library's
options (`options.build_options`) and an output plan, which the batch runner (`run.py`)
carries out.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from whisper_cli.cli.cluster import cluster_settings
from whisper_cli.cli.options import build_options
from whisper_cli.cli.output import OutputPlan
from whisper_cli.cli.params import (
    DECODING,
    DEFAULT_FORMAT,
    DEFAULT_MODEL,
    FALLBACK,
    INPUT,
    OUTPUT,
    PROMPT,
    RUN,
    WORDS,
    CacheDirOpt,
    ComputeTypeOpt,
    DebugOpt,
    DeviceOpt,
    ExcludeOpt,
    IncludeOpt,
    InputsArg,
    ModelOpt,
    OfflineOpt,
    QuietOpt,
    RayCollectOpt,
    RayOpt,
    RayWorkersOpt,
    RevisionOpt,
    ThreadsOpt,
    check_clip_timestamps,
    check_formats,
    check_increment,
    check_language,
    check_patience,
    check_shard,
    check_suppress_tokens,
    complete_formats,
    complete_languages,
    parse_optional_float,
    parse_shard,
)
from whisper_cli.cli.run import ModelSettings, run_transcription
from whisper_cli.cli.ui import Ui
from whisper_cli.errors import OptionsError
from whisper_cli.options import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS


def transcribe(
    inputs: InputsArg,
    # model
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = "auto",
    compute_type: ComputeTypeOpt = "auto",
    threads: ThreadsOpt = 0,
    # decoding
    language: Annotated[
        str | None,
        typer.Option(
            "--language",
            "-l",
            metavar="LANG",
            help="The spoken language, as a code (en, de, …), a name (English, German, …) or "
            "a tag (fr-FR and fr-CA are fr); detected when not given.",
            callback=check_language,
            autocompletion=complete_languages,
            show_default=False,
            rich_help_panel=DECODING,
        ),
    ] = None,
    temperature: Annotated[
        float,
        typer.Option(
            metavar="FLOAT",
            min=0.0,
            max=1.0,
            help="Temperature of the first decoding attempt.",
            rich_help_panel=DECODING,
        ),
    ] = 0.0,
    best_of: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            help="Candidates sampled when the temperature is above 0.",
            rich_help_panel=DECODING,
        ),
    ] = 5,
    seed: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=0,
            max=2**63 - 1,
            help="Where each window's sampling above temperature 0 starts: the same seed, "
            "the same transcript, run after run.",
            rich_help_panel=DECODING,
        ),
    ] = 0,
    beam_size: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            help="Beams of the beam search at temperature 0.",
            rich_help_panel=DECODING,
        ),
    ] = 5,
    patience: Annotated[
        float | None,
        typer.Option(
            metavar="FLOAT",
            help="Beam search patience: finished beams to wait for, as a multiple of the beam "
            "size (default: 1.0).",
            callback=check_patience,
            show_default=False,
            rich_help_panel=DECODING,
        ),
    ] = None,
    length_penalty: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="ALPHA",
            help="Rank candidates by length-penalised log-probability, with this alpha; "
            "by their mean log-probability when not given.",
            show_default=False,
            rich_help_panel=DECODING,
        ),
    ] = None,
    suppress_tokens: Annotated[
        str,
        typer.Option(
            metavar="IDS",
            help="Comma-separated token ids never to sample; -1 stands for the non-speech symbols.",
            callback=check_suppress_tokens,
            rich_help_panel=DECODING,
        ),
    ] = "-1",
    language_detection_windows: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Detect the language over this many 30-second windows that hold speech.",
            rich_help_panel=DECODING,
        ),
    ] = 1,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Decode N speech chunks (found by voice activity detection, up to 30 s each) "
            "at once instead of the sequential 30-s windows; faster, with no previous-text "
            "prompt between chunks.",
            rich_help_panel=DECODING,
        ),
    ] = 1,
    # fallback
    temperature_increment_on_fallback: Annotated[
        float | None,
        typer.Option(
            parser=parse_optional_float,
            callback=check_increment,
            metavar="FLOAT|none",
            help="Raise the temperature by this much, up to 1, while a window's text fails the "
            "thresholds below; 0 or none: no fallback.",
            rich_help_panel=FALLBACK,
        ),
    ] = 0.2,
    compression_ratio_threshold: Annotated[
        float | None,
        typer.Option(
            parser=parse_optional_float,
            metavar="FLOAT|none",
            help="Decode again hotter when the text's gzip compression ratio is above this "
            "(too repetitive).",
            rich_help_panel=FALLBACK,
        ),
    ] = 2.4,
    logprob_threshold: Annotated[
        float | None,
        typer.Option(
            parser=parse_optional_float,
            metavar="FLOAT|none",
            help="Decode again hotter when the mean token log-probability is below this.",
            rich_help_panel=FALLBACK,
        ),
    ] = -1.0,
    no_speech_threshold: Annotated[
        float | None,
        typer.Option(
            parser=parse_optional_float,
            metavar="FLOAT|none",
            help="Treat a window as silent when its no-speech probability is above this and "
            "its log-probability below --logprob-threshold.",
            rich_help_panel=FALLBACK,
        ),
    ] = 0.6,
    skip_silent_windows: Annotated[
        bool,
        typer.Option(
            "--skip-silent-windows/--no-skip-silent-windows",
            "--vad/--no-vad",
            help="Voice activity detection (Silero VAD) before decoding: skip the 30-s windows "
            "in which it hears no speech, instead of letting the model invent text for silence "
            "or music.",
            rich_help_panel=FALLBACK,
        ),
    ] = True,
    # prompt
    initial_prompt: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT",
            help="Text to prime the first window with: names, spelling, style.",
            show_default=False,
            rich_help_panel=PROMPT,
        ),
    ] = None,
    carry_initial_prompt: Annotated[
        bool,
        typer.Option(
            "--carry-initial-prompt",
            help="Put the initial prompt before every window's prompt, not only the first.",
            rich_help_panel=PROMPT,
        ),
    ] = False,
    condition_on_previous_text: Annotated[
        bool,
        typer.Option(
            "--condition-on-previous-text/--no-condition-on-previous-text",
            help="Prompt each window with the text before it (more consistent; turn off if "
            "the output gets stuck repeating itself).",
            rich_help_panel=PROMPT,
        ),
    ] = True,
    # word timestamps
    word_timestamps: Annotated[
        bool,
        typer.Option(
            "--word-timestamps",
            help="Time every word (from the cross-attention); adds words to the JSON.",
            rich_help_panel=WORDS,
        ),
    ] = False,
    prepend_punctuations: Annotated[
        str,
        typer.Option(
            metavar="CHARS",
            help="Punctuation joined to the word after it.",
            rich_help_panel=WORDS,
        ),
    ] = PREPEND_PUNCTUATIONS,
    append_punctuations: Annotated[
        str,
        typer.Option(
            metavar="CHARS",
            help="Punctuation joined to the word before it.",
            rich_help_panel=WORDS,
        ),
    ] = APPEND_PUNCTUATIONS,
    hallucination_silence_threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            metavar="SECONDS",
            help="Skip silences longer than this around suspected hallucinations; implies "
            "--word-timestamps.",
            show_default=False,
            rich_help_panel=WORDS,
        ),
    ] = None,
    split_on_pauses: Annotated[
        float | None,
        typer.Option(
            parser=parse_optional_float,
            metavar="SECONDS|none",
            help="With word timestamps, end a segment (a subtitle) where its words are this far "
            "apart, so that none spans a silence.",
            rich_help_panel=WORDS,
        ),
    ] = 0.5,
    # input
    clip_timestamps: Annotated[
        str,
        typer.Option(
            metavar="SECONDS",
            help="Only these parts: start,end,start,end,… in seconds; the last end defaults to "
            "the end of the file.",
            callback=check_clip_timestamps,
            rich_help_panel=INPUT,
        ),
    ] = "0",
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="K/N",
            help="Only part K of N (K from 0 to N-1) of the inputs, split by a stable hash of each "
            "input's path within its argument: N jobs (a Slurm array, GNU parallel) over one "
            "output folder do every file once. auto: K and N from a Slurm array; auto/N: K "
            "from Slurm or a Kubernetes Indexed Job.",
            callback=check_shard,
            show_default=False,
            rich_help_panel=INPUT,
        ),
    ] = None,
    # output
    output_format: Annotated[
        str,
        typer.Option(
            "--output-format",
            "-f",
            metavar="FORMATS",
            help="txt, srt, vtt, tsv, json, or a comma-separated list of them, or all.",
            callback=check_formats,
            autocompletion=complete_formats,
            rich_help_panel=OUTPUT,
        ),
    ] = DEFAULT_FORMAT,
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "-o",
            metavar="DIR",
            file_okay=False,
            help="Where to write the outputs (created if missing); files found in folders keep "
            "their relative place.",
            show_default="current folder",
            rich_help_panel=OUTPUT,
        ),
    ] = Path(),
    stdout: Annotated[
        bool,
        typer.Option(
            "--stdout",
            help="Write the one chosen format to standard output instead of files (JSON Lines "
            "with a path key for several inputs).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Skip inputs whose outputs all exist already (resume a batch).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    max_line_width: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="CHARS",
            help="Wrap subtitle lines at this width; implies --word-timestamps.",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    max_line_count: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="LINES",
            help="At most this many lines per subtitle cue (needs --max-line-width).",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    max_words_per_line: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="WORDS",
            help="At most this many words per subtitle cue; implies --word-timestamps.",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    highlight_words: Annotated[
        bool,
        typer.Option(
            "--highlight-words",
            help="Underline each word in subtitles as it is spoken; implies --word-timestamps.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    # cluster
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    ray_collect: RayCollectOpt = False,
    # run
    quiet: QuietOpt = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Print each segment on standard error as it is decoded, and the libraries' "
            "warnings and log messages.",
            rich_help_panel=RUN,
        ),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Transcribe speech in audio and video files to text, subtitles and JSON."""
    _transcription_command("transcribe", **locals())


@functools.wraps(transcribe)  # the same parameters as transcribe, declared once
def translate(**values: Any) -> None:
    _transcription_command("translate", **values)


_TRANSCRIBE_PARAMETERS = tuple(
    name for name in transcribe.__annotations__ if name not in ("return", "inputs")
)


def _transcription_command(
    task: str,
    *,
    inputs: list[str],
    model: str,
    revision: str | None,
    offline: bool,
    cache_dir: Path | None,
    device: str,
    compute_type: str,
    threads: int,
    include: list[str] | None,
    exclude: list[str] | None,
    shard: str | None,
    output_format: str,
    output_dir: Path,
    stdout: bool,
    skip_existing: bool,
    ray: str | None,
    ray_workers: int | None,
    ray_collect: bool,
    quiet: bool,
    verbose: bool,
    debug: bool,
    **option_values: Any,
) -> None:
    """The body of `transcribe` and `translate`, given their parameters by name.

    Checks what Typer cannot, then runs the batch; the decoding and subtitle layout
    parameters (`option_values`) go to `build_options`.
    """
    from whisper_cli.writers import parse_formats

    formats = parse_formats(output_format)
    if stdout and len(formats) > 1:
        raise typer.BadParameter(
            "it writes one format: choose it with -f (txt, srt, vtt, tsv or json)",
            param_hint="'--stdout'",
        )
    if stdout and skip_existing:
        raise typer.BadParameter("--stdout writes no files to skip", param_hint="'--skip-existing'")
    if quiet and verbose:
        raise typer.BadParameter(
            "--quiet and --verbose contradict each other", param_hint="'--verbose'"
        )
    try:
        options, writer_options = build_options(task, **option_values)
    except OptionsError as error:
        raise typer.BadParameter(cli_names(str(error))) from None

    ui = Ui(quiet=quiet, verbose=verbose, debug=debug)
    plan = OutputPlan(formats, output_dir, stdout, skip_existing, writer_options)
    settings = ModelSettings(model, revision, offline, cache_dir, device, compute_type, threads)
    part = None if shard is None else parse_shard(shard)
    cluster = cluster_settings(ray, ray_workers, ray_collect, stdout, inputs)
    run_transcription(task, inputs, include, exclude, settings, options, plan, ui, part, cluster)


# ---------------------------------------------------------------------------------------------
# from parameters to options


def cli_names(message: str) -> str:
    """A library message with option field names (`max_line_count`) as flags."""
    names = "|".join(sorted((n for n in _TRANSCRIBE_PARAMETERS if "_" in n), key=len, reverse=True))
    return re.sub(rf"\b({names})\b", lambda m: "--" + m.group(1).replace("_", "-"), message)
