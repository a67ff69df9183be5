"""--shard K/N: a stable split of the inputs between jobs that share nothing but a folder."""

from __future__ import annotations

import pytest

from tests.test_cli import fast, invoke, tone
from whisper_cli.errors import OptionsError
from whisper_cli.inputs import discover
from whisper_cli.shard import parse_shard, shard_of


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("0/1", {}, (0, 1)),
        ("2/3", {}, (2, 3)),
        ("auto", {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8"}, (5, 8)),
        (
            "auto",
            {
                "SLURM_ARRAY_TASK_ID": "5",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_COUNT": "8",
            },
            (4, 8),
        ),
        ("auto/4", {"JOB_COMPLETION_INDEX": "3"}, (3, 4)),
    ],
)
def test_shard_specifications(text, environ, expected):
    assert parse_shard(text, environ) == expected


@pytest.mark.parametrize(
    ("text", "environ"),
    [("3/3", {}), ("-1/3", {}), ("1/0", {}), ("a/b", {}), ("2", {}), ("auto", {}),
     ("auto", {"JOB_COMPLETION_INDEX": "1"}), ("auto/2", {"JOB_COMPLETION_INDEX": "2"})],
)  # fmt: skip
def test_nonsense_shards_are_refused(text, environ):
    with pytest.raises(OptionsError, match="--shard"):
        parse_shard(text, environ)


def _keys(folder):
    jobs, errors = discover([str(folder)], folder / "out")
    assert not errors
    return {job.key: job for job in jobs}


def test_three_shards_cover_every_input_once_and_a_new_file_moves_no_other(tmp_path):
    folder = tmp_path / "corpus"
    for index in range(60):
        path = folder / f"speaker{index % 4}" / f"utterance{index}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    keys = _keys(folder)
    parts = {key: shard_of(key, 3) for key in keys}
    assert sorted(parts.values()).count(0) > 5  # all three parts get some
    assert set(parts.values()) == {0, 1, 2}
    # the key is the path within the argument: the same from elsewhere, so the same part
    elsewhere = tmp_path / "mounted" / "somewhere" / "corpus"
    elsewhere.parent.mkdir(parents=True)
    folder.rename(elsewhere)
    assert {key: shard_of(key, 3) for key in _keys(elsewhere)} == parts
    (elsewhere / "speaker9").mkdir()
    (elsewhere / "speaker9" / "late.wav").write_bytes(b"")
    again = {key: shard_of(key, 3) for key in _keys(elsewhere)}
    assert {key: part for key, part in again.items() if key in parts} == parts
    assert len(again) == len(parts) + 1


def test_three_jobs_write_every_output_once(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    for index in range(6):
        tone(folder / f"clip{index}.wav", seconds=0.5 + index / 10)
    out = tmp_path / "out"
    done = []
    for part in range(3):
        result = invoke(
            "transcribe", *fast(tiny_checkpoint), "-f", "txt", "-o", out, "-v",
            "--shard", f"{part}/3", folder,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert f"shard {part}/3: " in result.stderr
        done += [line for line in result.stderr.splitlines() if ": wrote " in line]
    assert len(done) == 6
    assert sorted(path.name for path in out.glob("*.txt")) == [f"clip{i}.txt" for i in range(6)]


def test_a_bad_shard_is_a_usage_error(tmp_path):
    result = invoke("transcribe", "--shard", "4/4", str(tone(tmp_path / "a.wav")))
    assert result.exit_code == 2
    assert "--shard" in result.stderr
