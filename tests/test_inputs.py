"""Inputs: folder walks, filters, errors, output naming without clashes or escapes, locks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from whisper_cli import inputs
from whisper_cli.inputs import Job, claim, discover, lock_holder, lock_path, outputs_exist


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    touch(
        root,
        "a.wav",
        "b.MP3",
        "notes.txt",
        "cover.jpg",
        ".hidden.wav",
        "sub/c.flac",
        "sub/deep/d.ogg",
        "sub/deep/e.m4a",
        ".git/objects/x.wav",
        "drafts/f.wav",
        "video/g.mkv",
    )
    return root


def relative_sources(jobs: list[Job], root: Path) -> list[str]:
    return [job.source.relative_to(root).as_posix() for job in jobs if job.source]


def relative_bases(jobs: list[Job], out: Path) -> list[str]:
    return [job.output_base.relative_to(out).as_posix() for job in jobs]


def test_folder_walk_is_recursive_sorted_and_skips_hidden(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs, errors = discover([str(tree)], out)
    assert errors == []
    assert relative_sources(jobs, tree) == [
        "a.wav",
        "b.MP3",
        "drafts/f.wav",
        "sub/c.flac",
        "sub/deep/d.ogg",
        "sub/deep/e.m4a",
        "video/g.mkv",
    ]
    assert relative_bases(jobs, out) == [
        "a",
        "b",
        "drafts/f",
        "sub/c",
        "sub/deep/d",
        "sub/deep/e",
        "video/g",
    ]
    assert jobs[3].display == str(tree / "sub" / "c.flac")


def test_include_and_exclude(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def sources(include=(), exclude=()) -> list[str]:
        jobs, errors = discover([str(tree)], out, include, exclude)
        assert errors == []
        return relative_sources(jobs, tree)

    assert sources(include=["*.wav"]) == ["a.wav", "drafts/f.wav"]
    assert sources(include=["sub/*"]) == ["sub/c.flac", "sub/deep/d.ogg", "sub/deep/e.m4a"]
    assert sources(exclude=["drafts", "*.m4a", "video/*"]) == [
        "a.wav",
        "b.MP3",
        "sub/c.flac",
        "sub/deep/d.ogg",
    ]
    assert sources(include=["sub/*"], exclude=["sub/deep"]) == ["sub/c.flac"]


def test_include_never_takes_files_that_are_not_audio(tree: Path, tmp_path: Path) -> None:
    jobs, errors = discover([str(tree)], tmp_path / "out", include=["*.txt"])
    assert jobs == []
    assert errors == [(str(tree), "no audio files found in folder")]


def test_errors_for_missing_paths_and_folders_without_audio(tmp_path: Path) -> None:
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    touch(tmp_path, "empty/readme.md", "empty/.hidden/x.wav")
    missing = str(tmp_path / "missing.wav")
    jobs, errors = discover([missing, str(tmp_path / "empty"), ""], tmp_path / "out")
    assert jobs == []
    assert errors == [
        (missing, "no such file or directory"),
        (str(tmp_path / "empty"), "no audio files found in folder"),
        ("", "no such file or directory"),
    ]


def test_explicit_files_are_taken_whatever_their_extension(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs, errors = discover([str(tree / "notes.txt"), str(tree / ".hidden.wav")], out)
    assert errors == []
    assert [job.source for job in jobs] == [tree / "notes.txt", tree / ".hidden.wav"]
    assert relative_bases(jobs, out) == ["notes", "_hidden"]  # outputs are never hidden


def test_order_follows_arguments_and_each_file_comes_once(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "link.wav").symlink_to(tree / "a.wav")
    args = [str(tree / "sub"), str(tree / "a.wav"), str(tree), str(tmp_path / "link.wav")]
    jobs, errors = discover(args, tmp_path / "out")
    assert errors == []
    sources = [job.source for job in jobs]
    assert sources[:4] == [
        tree / "sub/c.flac",
        tree / "sub/deep/d.ogg",
        tree / "sub/deep/e.m4a",
        tree / "a.wav",
    ]
    assert len(sources) == len({p.resolve() for p in sources}) == 7


def test_stdin_is_one_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs, errors = discover(["-", "-"], out)
    assert errors == []
    assert jobs == [Job(source=None, display="<stdin>", output_base=out / "stdin", key="-")]


def test_stdin_and_a_file_named_stdin_do_not_clash(tmp_path: Path) -> None:
    touch(tmp_path, "stdin.wav")
    out = tmp_path / "out"
    jobs, _ = discover(["-", str(tmp_path / "stdin.wav")], out)
    assert relative_bases(jobs, out) == ["stdin", "stdin.wav"]


# output naming


def test_same_stem_in_one_folder_keeps_the_extensions(tmp_path: Path) -> None:
    touch(tmp_path / "in", "a.mp3", "a.wav", "b.wav")
    out = tmp_path / "out"
    jobs, _ = discover([str(tmp_path / "in")], out)
    assert relative_bases(jobs, out) == ["a.mp3", "a.wav", "b"]


def test_same_name_in_two_places_gets_a_number(tmp_path: Path) -> None:
    touch(tmp_path, "x/a.wav", "y/a.wav", "z/A.wav", "w/a-2.wav.flac")
    out = tmp_path / "out"
    args = [str(tmp_path / d / n) for d, n in [("x", "a.wav"), ("y", "a.wav"), ("z", "A.wav")]]
    jobs, _ = discover([*args, str(tmp_path / "w" / "a-2.wav.flac")], out)
    # a difference in case only still clashes on macOS and Windows; "a-2.wav" is taken
    assert relative_bases(jobs, out) == ["a.wav", "a-3.wav", "A-4.wav", "a-2.wav"]


def test_two_folders_mirror_into_one_output_folder(tmp_path: Path) -> None:
    touch(tmp_path / "one", "sub/a.wav", "x.wav")
    touch(tmp_path / "two", "sub/b.wav", "x.wav")
    out = tmp_path / "out"
    jobs, _ = discover([str(tmp_path / "one"), str(tmp_path / "two")], out)
    assert relative_bases(jobs, out) == ["sub/a", "x.wav", "sub/b", "x-2.wav"]


def test_a_file_and_a_folder_file_with_one_name(tmp_path: Path) -> None:
    touch(tmp_path, "in/talk.wav", "talk.flac")
    out = tmp_path / "out"
    jobs, _ = discover([str(tmp_path / "in"), str(tmp_path / "talk.flac")], out)
    assert relative_bases(jobs, out) == ["talk.wav", "talk.flac"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("..wav", "_"),
        ("...wav", "__"),
        ("....wav", "___"),
        ("-rf.wav", "_rf"),
        ("--help.wav", "__help"),
        ("a\nb\tc.wav", "a_b_c"),
        ("back\\slash.wav", "back_slash"),
        ("bell\x07.wav", "bell_"),
        ("über 東京 🎉.wav", "über 東京 🎉"),
    ],
)
def test_names_are_sanitized(tmp_path: Path, name: str, expected: str) -> None:
    touch(tmp_path / "in", name)
    out = tmp_path / "out"
    ways = [[str(tmp_path / "in" / name)]]
    if not name.startswith("."):  # a folder walk skips hidden files
        ways.append([str(tmp_path / "in")])
    for args in ways:
        jobs, errors = discover(args, out)
        assert errors == []
        assert [job.output_base for job in jobs] == [out / expected]
        assert jobs[0].output_base.resolve().parent == out.resolve()


def test_long_names_are_shortened_and_stay_distinct(tmp_path: Path) -> None:
    stem = "é" * 120  # 240 bytes
    touch(tmp_path / "in", stem + ".wav", stem + ".mp3")
    out = tmp_path / "out"
    jobs, _ = discover([str(tmp_path / "in")], out)
    names = [job.output_base.name for job in jobs]
    assert len(set(names)) == 2
    assert all(len(n.encode()) <= 200 for n in names)
    assert names[0].endswith(".mp3") and names[1].endswith(".wav")


def non_utf8_name(folder: Path, name: bytes) -> Path:
    """A file whose name is the given bytes (not UTF-8), or a skip where names must be UTF-8."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with open(os.path.join(os.fsencode(folder), name), "wb"):
            pass
    except OSError:
        pytest.skip("the file system takes only UTF-8 names")
    return folder / os.fsdecode(name)


def test_a_name_that_is_not_utf8_keeps_its_bytes(tmp_path: Path) -> None:
    path = non_utf8_name(tmp_path / "in", b"caf\xe9 \xff.wav")
    out = tmp_path / "out"
    for args in ([str(path)], [str(tmp_path / "in")]):
        jobs, errors = discover(args, out)
        assert errors == []
        [job] = jobs
        assert os.fsencode(job.output_base) == os.fsencode(out) + b"/caf\xe9 \xff"
        assert not job.renamed


def test_a_long_name_that_is_not_utf8_is_cut_to_whole_bytes(tmp_path: Path) -> None:
    path = non_utf8_name(tmp_path, b"\xe9" * 230 + b".wav")
    [job], _ = discover([str(path)], tmp_path / "out")
    assert os.fsencode(job.output_base.name) == b"\xe9" * 200
    assert job.renamed


def test_jobs_say_which_outputs_are_renamed(tmp_path: Path) -> None:
    touch(tmp_path, "x/clip.wav", "y/clip.wav", "-dash.wav", "plain.wav", "in/sub/deep.wav")
    out = tmp_path / "out"
    args = [str(tmp_path / n) for n in ("x/clip.wav", "y/clip.wav", "-dash.wav", "plain.wav")]
    jobs, _ = discover([*args, str(tmp_path / "in")], out)
    renamed = {job.display: relative_bases([job], out)[0] for job in jobs if job.renamed}
    assert renamed == {
        args[0]: "clip.wav",
        args[1]: "clip-2.wav",
        args[2]: "_dash",
    }


def test_hidden_entries_passed_over_are_counted(tree: Path, tmp_path: Path) -> None:
    touch(tree, "sub/.DS_Store", "sub/deep/.f.wav")
    hidden: list[tuple[str, int]] = []
    jobs, _ = discover([str(tree), str(tree / "a.wav")], tmp_path / "out", hidden=hidden)
    assert hidden == [(str(tree), 4)]  # .hidden.wav, .git (not walked), .DS_Store, .f.wav
    assert len(jobs) == 7  # a.wav once


def test_outputs_never_escape_through_a_symbolic_link(tmp_path: Path) -> None:
    touch(tmp_path / "in", "sub/c.wav", "d.wav")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "sub").symlink_to(tmp_path / "elsewhere")
    jobs, errors = discover([str(tmp_path / "in")], out)
    assert relative_bases(jobs, out) == ["d"]
    assert len(errors) == 1
    assert errors[0][0] == str(tmp_path / "in" / "sub" / "c.wav")
    assert "outside" in errors[0][1]


# skip-existing and locks


def test_outputs_exist(tmp_path: Path) -> None:
    job = Job(tmp_path / "a.wav", "a.wav", tmp_path / "out" / "a.mp3")
    assert not outputs_exist(job, ["srt", "vtt"])
    touch(tmp_path / "out", "a.mp3.srt", "a.mp3.vtt")
    assert outputs_exist(job, ["srt", "vtt"])
    assert not outputs_exist(job, ["srt", "json"])


def make_job(tmp_path: Path) -> Job:
    return Job(tmp_path / "a.wav", "a.wav", tmp_path / "out" / "sub" / "a")


def test_claim_creates_and_removes_the_lock(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    lock = lock_path(job)
    assert lock == tmp_path / "out" / "sub" / "a.lock"
    with claim(job) as claimed:
        assert claimed
        assert lock.read_text().split() == [str(os.getpid()), socket.gethostname()]
        with claim(job) as again:  # the lock holds even within one process
            assert not again
        assert lock.exists()
    assert not lock.exists()


def test_claim_removes_the_lock_when_the_job_fails(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    with pytest.raises(RuntimeError), claim(job):
        raise RuntimeError
    assert not lock_path(job).exists()


def test_a_signal_while_the_lock_is_let_go_still_removes_it(tmp_path: Path, monkeypatch) -> None:
    """SIGTERM (which the program turns into an exception) landing between letting go of the
    lock and removing it: the lock is removed first, then the signal acts."""
    import signal

    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop

    release = inputs._HEARTBEAT.release

    def release_then_signal(path: Path) -> None:
        release(path)
        os.kill(os.getpid(), signal.SIGTERM)  # handled at the next instruction, or held

    monkeypatch.setattr(inputs._HEARTBEAT, "release", release_then_signal)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        job = make_job(tmp_path)
        with pytest.raises(Stop), claim(job):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not lock_path(job).exists()


def write_lock(job: Job, content: str, age: float = 0.0) -> None:
    lock = lock_path(job)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(content)
    stamp = time.time() - age
    os.utime(lock, (stamp, stamp))


def test_claim_waits_for_a_live_process_and_takes_over_after_it(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(job, f"{other.pid} {socket.gethostname()}\n")
        with claim(job) as claimed:
            assert not claimed
        assert lock_path(job).exists()  # not ours to remove
    finally:
        other.kill()
        other.wait()
    with claim(job) as claimed:  # the holder is gone: its lock is stale
        assert claimed
        assert lock_path(job).read_text().split()[0] == str(os.getpid())
    assert sorted(p.name for p in lock_path(job).parent.iterdir()) == []


def test_fresh_locks_of_other_hosts_are_respected(tmp_path: Path) -> None:
    """A process on another host cannot be asked whether it runs: its lock holds while its
    heartbeat keeps it younger than LOCK_STALE_SECONDS, whatever its pid is here."""
    job = make_job(tmp_path)
    write_lock(job, "1 some-other-host.example\n", age=inputs.LOCK_STALE_SECONDS / 2)
    taken = []
    with claim(job, on_takeover=taken.append) as claimed:
        assert not claimed
    assert lock_path(job).read_text() == "1 some-other-host.example\n" and taken == []


def test_unreadable_locks_are_stale_only_once_old(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    write_lock(job, "")  # a process between creating the lock and writing its pid
    with claim(job) as claimed:
        assert not claimed
    write_lock(job, "garbage", age=60)
    with claim(job) as claimed:
        assert claimed


def test_a_fresh_lock_that_replaced_a_stale_one_is_put_back(tmp_path: Path, monkeypatch) -> None:
    job = make_job(tmp_path)
    write_lock(job, "999999999\n")  # no such process
    fresh = f"{os.getpid()} {socket.gethostname()} (another process took over first)\n"
    rename = os.rename

    def rename_after_another_process_took_over(source, target):
        lock_path(job).write_text(fresh)  # it removed the stale lock and created its own
        rename(source, target)

    monkeypatch.setattr(os, "rename", rename_after_another_process_took_over)
    with claim(job) as claimed:
        assert not claimed
    assert lock_path(job).read_text() == fresh
    assert [p.name for p in lock_path(job).parent.iterdir()] == ["a.lock"]


@pytest.fixture
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "LOCK_POLL_SECONDS", 0.02)


def later(action, after: float = 0.3) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(after), action()))
    thread.start()
    return thread


@pytest.mark.usefixtures("quick_polls")
@pytest.mark.parametrize("how", ["released", "holder killed"])
def test_claim_can_wait_for_the_lock(tmp_path: Path, how: str) -> None:
    """A held lock is waited for until its holder removes it, or until the holder dies and
    leaves it stale; then it is taken."""
    job = make_job(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(job, f"{other.pid} {socket.gethostname()}\n")
        assert lock_holder(job) == f"process {other.pid} on {socket.gethostname()}"
        if how == "released":
            thread = later(lock_path(job).unlink)
        else:
            thread = later(lambda: (other.kill(), other.wait()))
        waits = []
        with claim(job, wait=True, on_wait=lambda: waits.append(1)) as claimed:
            assert claimed
            assert lock_path(job).read_text().split()[0] == str(os.getpid())
        thread.join()
        assert waits == [1]  # told once
        assert not lock_path(job).exists()
        with claim(job, wait=True, on_wait=lambda: waits.append(2)) as claimed:
            assert claimed
        assert waits == [1]  # a free lock: no wait to tell
    finally:
        other.kill()
        other.wait()


def test_lock_holder_of_a_lock_that_tells_nothing(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    assert lock_holder(job) == ""  # no lock
    write_lock(job, "")
    assert lock_holder(job) == ""


# locks of other hosts: kept fresh by their holder's heartbeat, taken over once stale


def test_a_stale_lock_of_another_host_is_taken_over_and_said(tmp_path: Path) -> None:
    """A lock from another host (a shared NFS folder, a Slurm array) that nobody has refreshed
    for longer than LOCK_STALE_SECONDS is taken over, with the same rename-aside protocol as a
    local stale lock; who held it is told (before: waited for forever)."""
    job = make_job(tmp_path)
    write_lock(job, "4242 node17.cluster\n", age=inputs.LOCK_STALE_SECONDS + 120)
    taken = []
    with claim(job, on_takeover=taken.append) as claimed:
        assert claimed
        assert lock_path(job).read_text().split() == [str(os.getpid()), socket.gethostname()]
    assert taken == ["process 4242 on node17.cluster, not refreshed for 12 min"]
    assert list(lock_path(job).parent.iterdir()) == []  # nothing left aside


@pytest.mark.usefixtures("quick_polls")
def test_a_lock_of_another_host_is_waited_for_while_it_is_refreshed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiting process leaves another host's lock alone while its holder refreshes it, and
    takes it over once the refreshing has stopped for LOCK_STALE_SECONDS."""
    monkeypatch.setattr(inputs, "LOCK_STALE_SECONDS", 0.3)
    job = make_job(tmp_path)
    write_lock(job, "4242 node17.cluster\n")
    stopped = threading.Event()

    def other_host_heartbeat() -> None:
        for _ in range(30):  # 1.5 s, five times the stale limit
            os.utime(lock_path(job))
            time.sleep(0.05)
        stopped.set()  # the other host's process dies

    thread = threading.Thread(target=other_host_heartbeat)
    thread.start()
    watchdog = _give_up_after(lock_path(job))
    waits, taken = [], []
    try:
        with claim(job, wait=True, on_wait=lambda: waits.append(1), on_takeover=taken.append):
            assert stopped.is_set()
    finally:
        thread.join()
        watchdog.set()
    assert waits == [1] and len(taken) == 1 and taken[0].startswith("process 4242 on node17")


def _give_up_after(lock: Path, seconds: float = 60) -> threading.Event:
    """Remove the lock after `seconds` unless the returned event is set first, so that a
    waiter that never takes it over fails its test rather than waiting forever."""
    done = threading.Event()

    def watch() -> None:
        if not done.wait(seconds):
            lock.unlink(missing_ok=True)

    threading.Thread(target=watch, daemon=True).start()
    return done


def test_a_held_lock_is_kept_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a job is held (the CLI may spend hours on one long recording), a thread sets the
    lock's modification time to now every LOCK_HEARTBEAT_SECONDS, so other hosts see it is
    alive; it stops once the lock is given back."""
    monkeypatch.setattr(inputs, "LOCK_HEARTBEAT_SECONDS", 0.02)
    job = make_job(tmp_path)
    lock = lock_path(job)
    old = time.time() - 3600
    with claim(job) as claimed:
        assert claimed
        os.utime(lock, (old, old))
        deadline = time.monotonic() + 30
        while lock.stat().st_mtime < old + 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lock.stat().st_mtime > old + 60, "the heartbeat did not refresh the lock"
        monkeypatch.setattr(socket, "gethostname", lambda: "another-host")  # seen from there
        assert inputs._stale(lock.read_bytes(), time.time() - lock.stat().st_mtime) is None
    assert not lock.exists()
    deadline = time.monotonic() + 30
    while inputs._HEARTBEAT._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inputs._HEARTBEAT._thread is None  # no lock held, no thread


def test_a_lock_taken_over_meanwhile_is_not_removed_by_its_old_holder(tmp_path: Path) -> None:
    """Had this process stopped refreshing its lock (suspended for longer than the stale
    limit), another host may have taken it over: on release it removes only its own lock."""
    job = make_job(tmp_path)
    with claim(job) as claimed:
        assert claimed
        lock_path(job).write_text("4242 node17.cluster\n")  # taken over meanwhile
    assert lock_path(job).read_text() == "4242 node17.cluster\n"


def test_the_cli_takes_over_a_stale_lock_of_another_host_and_says_so(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line waits for another host's fresh lock (the job is neither skipped nor
    counted as done), then takes it over once it goes stale, saying so, and writes the job."""
    from tests.test_cli import fast, invoke, tone

    monkeypatch.setattr(inputs, "LOCK_POLL_SECONDS", 0.02)
    monkeypatch.setattr(inputs, "LOCK_STALE_SECONDS", 0.5)
    audio = tone(tmp_path / "in" / "a.wav")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.lock").write_text("4242 node17.cluster\n")
    watchdog = _give_up_after(out / "a.lock")
    try:
        result = invoke("transcribe", *fast(tiny_checkpoint), audio, "-f", "json", "-o", out)
    finally:
        watchdog.set()
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"{audio}: waiting for process 4242 on node17") for line in lines)
    assert f"{audio}: took over the stale lock {out / 'a.lock'} of process 4242 on node17" in (
        result.stderr
    )
    assert lines[-1] == "1 transcribed, 0 failed"
    assert sorted(p.name for p in out.iterdir()) == ["a.json"]
