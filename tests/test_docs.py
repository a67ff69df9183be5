"""The generated man page and completion scripts: up to date, lint-clean, complete."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from tests.conftest import require
from whisper_cli import _docs
from whisper_cli.cli.app import app

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_source_date(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def test_generated_files_are_up_to_date():
    stale = _docs.update(REPO, check=True)
    assert not stale, f"run `python -m whisper_cli._docs` to regenerate {', '.join(stale)}"


def test_update_writes_then_finds_nothing_stale(tmp_path):
    assert sorted(_docs.update(tmp_path)) == sorted(_docs.generated_files())
    assert _docs.update(tmp_path, check=True) == []
    (tmp_path / "completions" / "whisper-cli").write_text("# edited by hand\n")
    assert _docs.update(tmp_path, check=True) == ["completions/whisper-cli"]
    assert _docs.update(tmp_path) == ["completions/whisper-cli"]
    assert _docs.update(tmp_path, check=True) == []


def test_generated_files_are_the_ones_pyproject_ships():
    shipped = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    for relative in _docs.generated_files():
        assert f'"{relative}"' in shipped, relative


# `whisper-cli` on PyPI is an unrelated package: every install goes through the checkout
BY_NAME = re.compile(
    r"(pip3? install|pipx install|pipx run|uv tool install|uvx) +['\"]?whisper-cli\b"
)


def test_install_words_never_fetch_the_name_from_pypi():
    texts = [
        REPO / "README.md",
        *(REPO / "bench").glob("*.md"),
        *(REPO / "whisper_cli").rglob("*.py"),
    ]
    found = [
        f"{path.relative_to(REPO)}: {match.group()}"
        for path in texts
        for match in BY_NAME.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not found
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert all(f"`{tool} install .`" in readme for tool in ("pipx", "uv tool", "pip"))


def _groff() -> str:
    """groff, or a skip (a failure where nothing may skip: `.ci/run` installs groff-base)."""
    found = shutil.which("groff")
    return str(require(Path(found) if found else None, "groff (apt-get install groff-base)"))


# `man` renders with -Tutf8 in a UTF-8 locale, with -Tlatin1 or -Tascii in others (LANG=C)
@pytest.mark.parametrize("device", ["utf8", "latin1", "ascii"])
def test_man_page_renders_without_warnings_in_any_locale(device):
    result = subprocess.run(
        [_groff(), "-man", "-ww", f"-T{device}", "-P-cbou", str(REPO / "man" / _docs.MAN_FILE)],
        capture_output=True,
        env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode()
    page = result.stdout.decode("utf-8" if device == "utf8" else "latin-1")
    # --append-punctuations' default: its CJK punctuation itself, or the code points
    if device == "utf8":
        assert "\"'.。,，!！?？:：”)]}、]" in page
    else:
        assert '"\'.<U+3002>,<U+FF0C>!<U+FF01>?<U+FF1F>:<U+FF1A>")]}<U+3001>]' in page


def test_man_page_escapes_every_non_ascii_character():
    page = _docs.man_page()
    assert page.isascii()
    assert "\\[u3002]" in page and ".fchar \\[u3002] <U+3002>" in page
    assert "from whisper_cli/cli/;" in page.splitlines()[0]


def _commands(group, path):
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            yield from _commands(command, [*path, name])
        else:
            yield [*path, name], command


def test_man_page_documents_every_command_and_option():
    page = _docs.man_page()
    root = typer.main.get_command(app)
    for option in root.params:
        for name in option.opts:
            assert _docs.escape(name) in page, name
    for path, command in _commands(root, ["whisper-cli"]):
        assert f'.SS "{_docs.escape(" ".join(path))}' in page, path
        for param in command.params:
            for name in (*param.opts, *param.secondary_opts):
                if param.param_type_name == "option":
                    assert _docs.escape(name) in page, (path, name)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS"):
        assert f".SH {section}\n" in page
    for section in ("ENVIRONMENT", "FILES", "EXAMPLES"):
        assert f".SH {section}\n" in page
    for variable in ("WHISPER_CLI_MODEL", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "NO_COLOR"):
        assert f".B {variable}" in page or f"\\fB{_docs.escape(variable)}\\fR" in page
    for status in ("0", "1", "2", "130", "143"):
        assert f"\\fB{status}\\fR" in page


def test_man_page_escapes_hyphens_and_is_ascii():
    page = _docs.man_page()
    assert page.isascii()
    body = [line for line in page.splitlines() if not line.startswith(('.\\"', ".TH "))]
    assert not [line for line in body if "-" in line.replace("\\-", "")], "unescaped hyphen"


def test_man_page_date_is_reproducible(monkeypatch):
    assert f'"{_docs.MANUAL_DATE}"' in _docs.man_page()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert '"2023-11-14"' in _docs.man_page()


def test_completion_scripts_call_the_program_back():
    files = _docs.generated_files()
    assert (
        "complete -o default -F _whisper_cli_completion whisper-cli"
        in files["completions/whisper-cli"]
    )
    assert files["completions/_whisper-cli"].startswith("#compdef whisper-cli\n")
    assert "_WHISPER_CLI_COMPLETE=complete_fish" in files["completions/whisper-cli.fish"]
