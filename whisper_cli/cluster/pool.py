"""The workers of a run, in a `ray.util.ActorPool`, and what happens when one dies.

Each worker is a Ray actor (`worker.Transcriber`) that Ray restarts when its process dies, up
to `MAX_RESTARTS` times (on another node when its node is lost). A worker joins the pool once
its model is loaded, and is handed one group of files at a time. When a worker dies with a
group in work, the group goes back to the front of the queue, for whichever worker is free
first, and the worker rejoins once Ray has restarted it and its model is loaded again; a group
on which workers died `MAX_ATTEMPTS` times is given up, its files failed with
`WorkerLostError`. A file that fails on its own merits (audio that does not decode) is a
result like any other and is not handed out again.

`Cluster.run` yields, in the order they happen: the model's facts (once, when the first
worker is ready), each file's result, and an event for each worker that died or could not
load the model.
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from whisper_cli.cluster.session import ClusterError, import_ray, signals_as_raised
from whisper_cli.cluster.worker import (
    FileResult,
    FileTask,
    ModelFacts,
    Refused,
    Transcriber,
    WorkerSpec,
)
from whisper_cli.errors import WhisperCliError

MAX_RESTARTS = 3  # times Ray restarts one worker whose process died
MAX_ATTEMPTS = 3  # times one group of files is handed out while workers die on it
POLL_SECONDS = 0.5  # how often the driver looks up from waiting (workers joining, Ctrl-C)


class WorkerLostError(WhisperCliError):
    """A file given up after the workers transcribing it died `MAX_ATTEMPTS` times."""


@dataclass(frozen=True)
class WorkerLost:
    """A worker died (its process killed, out of memory, its node lost) with files in work;
    they were handed out again unless `given_up`."""

    where: str  # the worker's process and node, as far as Ray tells
    keys: tuple[Any, ...]  # the unfinished files
    given_up: bool


@dataclass(frozen=True)
class WorkerRefused:
    """A worker could not load the model; the run goes on without it."""

    error: BaseException


Event = ModelFacts | FileResult | WorkerLost | WorkerRefused


@dataclass
class _Work:
    tag: int
    tasks: tuple[FileTask, ...]
    attempts: int = 0


@dataclass
class _State:
    waiting: deque[_Work] = field(default_factory=deque)  # handed back by dead workers
    in_flight: dict[str, _Work] = field(default_factory=dict)  # by the worker's actor id
    refusals: list[BaseException] = field(default_factory=list)
    facts_told: bool = False


class Cluster:
    """`workers` Ray actors with the model loaded once each, `cpus` and `gpus` apiece."""

    def __init__(self, spec: WorkerSpec, workers: int, cpus: float = 1.0, gpus: float = 0.0):
        self.ray = import_ray()
        from ray.util import ActorPool

        actor = self.ray.remote(
            num_cpus=cpus, num_gpus=gpus, max_restarts=MAX_RESTARTS, max_task_retries=0
        )(Transcriber)
        self.actors = {}
        for _ in range(workers):
            handle = actor.remote(spec)
            self.actors[_actor_key(handle)] = handle
        self.pool = ActorPool([])  # a worker joins once its model is loaded
        self.facts: dict[str, ModelFacts] = {}  # each worker's, from its latest start
        self.joining = {handle.ready.remote(): handle for handle in self.actors.values()}

    def run(self, groups: Iterable[Sequence[FileTask]]) -> Iterator[Event]:
        """Hand out the groups as workers come free (each group is taken from `groups` only
        then); yield what happens. Raises the model's error when no worker could load it, and
        ClusterError when every worker is gone with files left."""
        with signals_as_raised():
            yield from self._dispatch(iter(groups))

    def _dispatch(self, source: Iterator[Sequence[FileTask]]) -> Iterator[Event]:
        from ray.exceptions import RayActorError

        state = _State()
        tags = count()
        ended = False
        while True:
            if ended and not state.waiting and not self.pool.has_next():
                return
            yield from self._welcome(state, wait=not self.pool.has_next())
            while self.pool.has_free():
                work = state.waiting.popleft() if state.waiting else None
                if work is None and not ended:
                    group = next(source, None)
                    if group is None:
                        ended = True
                    else:
                        work = _Work(next(tags), tuple(group))
                if work is None:
                    break
                self.pool.submit(lambda handle, work: self._call(handle, work, state), work)
            if not self.pool.has_next():
                if ended and not state.waiting:
                    return
                if not self.joining and not self.pool.has_free():
                    if state.refusals:
                        raise state.refusals[0]
                    raise ClusterError("every Ray worker died; files are left undone")
                continue  # wait for a worker to join
            try:
                tag, results = self.pool.get_next_unordered(timeout=POLL_SECONDS)
            except TimeoutError:
                continue
            except RayActorError as error:
                yield from self._lost(error, state)
                continue
            for key, work in list(state.in_flight.items()):
                if work.tag == tag:
                    del state.in_flight[key]
            yield from results

    def close(self) -> None:
        """Stop the workers (they also end with the driver's connection)."""
        for handle in self.actors.values():
            with contextlib.suppress(Exception):  # already gone, or the connection with it
                self.ray.kill(handle, no_restart=True)

    def _call(self, handle: Any, work: _Work, state: _State) -> Any:
        state.in_flight[_actor_key(handle)] = work
        return handle.transcribe.remote(work.tag, work.tasks)

    def _welcome(self, state: _State, wait: bool) -> Iterator[Event]:
        """Workers whose model is loaded (first start or restart) join the pool."""
        from ray.exceptions import RayActorError

        if not self.joining:
            return
        ready, _ = self.ray.wait(
            list(self.joining),
            num_returns=1 if wait else len(self.joining),
            timeout=POLL_SECONDS if wait else 0,
        )
        for ref in ready:
            handle = self.joining.pop(ref)
            try:
                answer = self.ray.get(ref)
            except RayActorError:  # restarted too often, or its node is gone: out for good
                continue
            if isinstance(answer, Refused):  # told once another worker works, else raised
                state.refusals.append(answer.error)
                self.ray.kill(handle, no_restart=True)
                if state.facts_told:
                    yield WorkerRefused(answer.error)
                continue
            self.facts[_actor_key(handle)] = answer
            if not state.facts_told:
                state.facts_told = True
                yield answer
                yield from (WorkerRefused(error) for error in state.refusals)
            self.pool.push(handle)

    def _lost(self, error: Exception, state: _State) -> Iterator[Event]:
        """A worker died with a group in work: the group goes back to the queue (or is given
        up), and the worker rejoins once Ray has restarted it."""
        key = getattr(error, "actor_id", None)
        work = state.in_flight.pop(key, None) if key else None
        handle = self.actors.get(key) if key else None
        if work is None or handle is None:
            raise error  # not one of ours
        _evict(self.pool, handle)
        self.joining[handle.ready.remote()] = handle
        work.attempts += 1
        given_up = work.attempts >= MAX_ATTEMPTS
        yield WorkerLost(self._where(key, error), tuple(task.key for task in work.tasks), given_up)
        if not given_up:
            state.waiting.appendleft(work)
            return
        lost = WorkerLostError(f"the Ray workers transcribing it died {work.attempts} times")
        for task in work.tasks:
            yield FileResult(task.key, error=lost)

    def _where(self, key: str, error: Exception) -> str:
        """`pid 123 on node5`: the worker's process when it last started, else as far as
        Ray's message tells."""
        facts = self.facts.get(key)
        if facts is not None:
            return f"pid {facts.pid} on {facts.host}"
        text = str(error)
        pid = re.search(r"\bpid: (\d+)", text)
        ip = re.search(r"\bip: (\S+)", text)
        parts = [f"pid {pid.group(1)}"] if pid else []
        return " ".join(parts + ([f"on {ip.group(1)}"] if ip else [])) or "unknown"


def _actor_key(handle: Any) -> str:
    return handle._actor_id.hex()


def _evict(pool: Any, handle: Any) -> None:
    """Take a dead worker out of the pool's idle workers, if the pool put it back there
    (older Ray does; newer drops it itself)."""
    idle = []
    while (actor := pool.pop_idle()) is not None:
        idle.append(actor)
    for actor in idle:
        if _actor_key(actor) != _actor_key(handle):
            pool.push(actor)
