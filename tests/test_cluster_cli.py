"""The command line's cluster options (`whisper_cli.cli.cluster`), checked without starting
Ray: what they refuse, what --help costs, and a machine without Ray. The runs on a real Ray
instance are in test_cluster.py."""

from __future__ import annotations

import pytest

from tests.test_cli import errors, fast, imported, invoke, run, tone
from whisper_cli.cli.cluster import _group_size
from whisper_cli.cluster.session import ClusterError, check_address


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ray-workers", "2"], "needs --ray"),
        (["--ray-collect"], "needs --ray"),
        (["--ray", "somewhere"], "not a Ray address"),
        (["--ray", "local", "-"], "cannot read standard input"),
    ],
)
def test_cluster_options_that_make_no_sense_are_usage_errors(tmp_path, args, message):
    audio = tone(tmp_path / "a.wav")
    result = invoke("transcribe", "-m", tmp_path / "none", *args, audio)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


@pytest.mark.parametrize(
    "address", ["local", "auto", "ray://head:10001", "10.0.0.5:6379", "ray://[::1]:10001"]
)
def test_ray_addresses(address):
    assert check_address(address) == address


def test_a_machine_without_ray_gets_one_line_and_skipped_files_never_need_it(
    tmp_path, tiny_checkpoint, monkeypatch
):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` fails
    audio = tone(tmp_path / "a.wav")
    out = tmp_path / "out"
    args = ["transcribe", *fast(tiny_checkpoint), "-f", "txt", "-o", out, "--ray", "local"]
    result = invoke(*args, audio)
    assert result.exit_code == 1, result.output
    assert errors(result.stderr) == [
        ("Ray is not installed", "pip install '.[ray]' in the whisper-cli checkout "
         "(or pip install 'ray>=2.40')")
    ]  # fmt: skip
    out.mkdir()
    (out / "a.txt").write_text("done before\n")
    result = invoke(*args, "--skip-existing", audio)  # nothing left to do: no Ray needed
    assert result.exit_code == 0, result.output


def test_help_shows_the_cluster_panel_without_importing_ray():
    result = run(["transcribe", "--help"], env={"PYTHONPROFILEIMPORTTIME": "1", "COLUMNS": "100"})
    assert result.returncode == 0
    assert "Cluster" in result.stdout and "--ray-collect" in result.stdout
    assert not imported(result.stderr) & {"ray", "torch"}


def test_a_bad_address_is_a_cluster_error():
    with pytest.raises(ClusterError, match="ray://HOST:PORT"):
        check_address("http://head:8265")


def test_groups_are_single_files_or_up_to_4n_but_leave_no_worker_idle():
    assert _group_size(1, 1000, 4) == 1  # one file at a time, as a local run does them
    assert _group_size(8, 1000, 4) == 32  # for the engine to fill its batches
    assert _group_size(8, 21, 2) == 11  # both workers get files
    assert _group_size(8, 1, 3) == 1
