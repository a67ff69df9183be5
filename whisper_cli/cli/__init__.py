"""The `whisper-cli` command line: a thin adapter from Typer parameters to the library.

Parameters become one `TranscribeOptions` and one `WriterOptions` (`options.build_options`),
which are passed down; the library does the work and raises `WhisperCliError` for problems a
user can fix. Data goes to standard output, everything else (progress, warnings, errors, the
summary) to standard error (`ui.py`).

Exit status: 0 when every input succeeded, 1 when any failed (the others are still done) or
the model cannot be loaded, 2 for usage errors, 130 on Ctrl-C and 143 on SIGTERM. Outputs are
written atomically, so an interrupted run leaves no partial file.

`--help` and shell completion must stay fast (completion runs the program on every TAB), so
these modules import neither torch nor numpy nor huggingface_hub nor rich at the top: commands
import what they need when they run.

    app.py              the Typer app; registers the commands; main()
    params.py           the program's name, help panels, parsers, completions, shared options
    help.py             the help's layout (whole option names); plain usage errors off a terminal
    compat.py           openai-whisper's option spellings (`--output_format`, `--fp16 False`, …)
    transcribe.py       transcribe, translate
    options.py          their parameter values → the library's options (build_options)
    detect_language.py  detect-language
    models.py           models list, models download
    run.py              the batch runner: model loading, inputs, outputs
    ui.py               standard error: messages, progress, the summary; exit statuses
"""

from whisper_cli.cli.app import main

__all__ = ["main"]
