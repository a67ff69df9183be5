"""The README's Python examples run as written (with the real base weights standing in for the
"base" download and a real recording for talk.flac), and the API says what the README says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import whisper_cli
from whisper_cli.errors import OptionsError

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[
        text.index("\n## Python\n") : text.index("\n## ", text.index("\n## Python\n") + 1)
    ]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_has_the_examples_this_file_runs():
    examples = _python_examples()
    assert len(examples) == 2
    assert 'load_model("base")' in examples[0]
    assert "transcribe_stream" in examples[1]


@pytest.mark.real_model
def test_the_python_examples_run(real_model_path, audio_dir, capsys):
    talk = str(audio_dir / "en_ls_61-70968-0000.flac")
    code = "\n".join(_python_examples())
    code = code.replace('load_model("base")', f"load_model({str(real_model_path)!r})")
    code = code.replace('"talk.flac"', repr(talk))
    exec(compile(code, str(README), "exec"), {})  # noqa: S102 (our own README)
    out = capsys.readouterr().out
    assert "en  He began a confused complaint" in out  # language, then the text
    assert "en, 4.9 s" in out  # transcribe_stream's info line


def test_openai_keywords_that_are_not_options_are_errors_not_ignored():
    with pytest.raises(OptionsError, match="fp16"):
        whisper_cli.TranscribeOptions.from_kwargs(fp16=True)
    assert whisper_cli.TranscribeOptions.from_kwargs(language="en").decoding.language == "en"
