"""What a Ray worker does with the files it is handed (`whisper_cli.cluster.worker`), tried
here without Ray: the class is the actor's body. The tiny random-weight model stands in for
Whisper; tones stand in for speech (every window decoded)."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import pytest

from tests.test_cli import tone
from whisper_cli.cluster.worker import (
    FileTask,
    ModelFacts,
    ModelSpec,
    Refused,
    Transcriber,
    WorkerSpec,
    portable,
)
from whisper_cli.errors import AudioError
from whisper_cli.options import DecodingOptions, TranscribeOptions
from whisper_cli.writers import WriterOptions

FAST = TranscribeOptions(
    decoding=DecodingOptions(language="en"), temperatures=(0.0,), skip_silent_windows=False
)


@pytest.fixture(autouse=True)
def _back_to_this_folder(monkeypatch, tmp_path):
    """A worker moves into the driver's folder; the test process comes back after."""
    monkeypatch.chdir(tmp_path.parent)


def _spec(model, tmp_path, **changes) -> WorkerSpec:
    spec = WorkerSpec(
        ModelSpec(str(model), device="cpu", threads=1),
        FAST,
        ("json", "txt"),
        WriterOptions(),
        str(tmp_path),
    )
    return replace(spec, **changes)


def _inputs(tmp_path):
    tone(tmp_path / "in" / "a.wav", seconds=1.0)
    tone(tmp_path / "in" / "b.wav", seconds=2.0, frequency=300)
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF, but nothing else" * 4)
    return ["in/a.wav", "in/broken.wav", "in/b.wav"]  # relative to the driver's folder


def test_a_worker_writes_what_it_transcribes_and_returns_a_bad_file_as_its_error(
    tmp_path, tiny_checkpoint
):
    names = _inputs(tmp_path)  # relative to the driver's folder, not the worker's
    worker = Transcriber(_spec(tiny_checkpoint, tmp_path))
    facts = worker.ready()
    assert isinstance(facts, ModelFacts) and facts.family == "whisper"
    tasks = [FileTask(i, name, f"out/{name[3:-4]}") for i, name in enumerate(names)]
    tag, results = worker.transcribe("tag", tasks)
    assert tag == "tag" and [result.key for result in results] == [0, 1, 2]
    good = [results[0], results[2]]
    assert all(result.error is None and result.transcript is None for result in good)
    assert results[0].written == ("out/a.json", "out/a.txt")
    record = json.loads((tmp_path / "out" / "b.json").read_text(encoding="utf-8"))
    assert record["duration"] == pytest.approx(2.0) == results[2].info.duration
    assert isinstance(results[1].error, AudioError) and "in/broken.wav" in str(results[1].error)
    assert not (tmp_path / "out" / "broken.json").exists()
    assert repr(pickle.loads(pickle.dumps(results))) == repr(results)  # what crosses back


def test_a_worker_that_collects_writes_nothing_and_sends_the_transcripts(tmp_path, tiny_checkpoint):
    names = _inputs(tmp_path)
    spec = _spec(tiny_checkpoint, tmp_path, options=replace(FAST, batch_size=4))
    worker = Transcriber(spec)
    _, results = worker.transcribe(7, [FileTask(name, name) for name in names])  # the engine
    by_name = {result.key: result for result in results}
    assert by_name["in/a.wav"].transcript.duration == pytest.approx(1.0)
    assert by_name["in/b.wav"].transcript.duration == pytest.approx(2.0)
    assert by_name["in/b.wav"].written == () and by_name["in/broken.wav"].error is not None
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == [
        "a.wav",
        "b.wav",
        "broken.wav",
    ]


def test_a_worker_that_cannot_load_the_model_says_so_instead_of_dying(tmp_path):
    worker = Transcriber(_spec(tmp_path / "no-such-model", tmp_path))
    answer = worker.ready()
    assert isinstance(answer, Refused) and "no-such-model" in str(answer.error)
    _, results = worker.transcribe(0, [FileTask(0, "a.wav", "a")])
    assert results[0].error is answer.error


def test_errors_that_do_not_pickle_cross_as_a_runtime_error_that_names_them():
    class Odd(Exception):
        def __init__(self, first, second):
            super().__init__(f"{first} and {second}")

    assert isinstance(portable(AudioError("x: cannot decode")), AudioError)
    crossed = portable(Odd("this", "that"))
    assert type(crossed) is RuntimeError and str(crossed) == "Odd: this and that"
