"""Connecting to Ray: a private instance on this machine that talks over loopback only
(`local`), the cluster this machine belongs to (`auto`), or a remote one (`ray://HOST:PORT`,
through Ray Client; `HOST:PORT` names a head node's GCS directly).

By default Ray registers a node under the machine's interface address, even when told
`_node_ip_address="127.0.0.1"`, and its servers listen on every interface. In the local mode
Ray is told that this is a single machine (as it is on macOS and Windows), so that the node is
127.0.0.1 and every server listens there; that is checked once the instance runs. The
instance gets a fresh random token (Ray's token authentication) that only this process and
its children know, no dashboard, no usage statistics, its session files under a temporary
folder (removed at the end, never in the home folder), and its workers' output is not
forwarded. What the local mode sets in the environment is put back on leaving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from whisper_cli.errors import WhisperCliError, first_line

_log = logging.getLogger("whisper_cli.cluster")

LOCAL = "local"
AUTO = "auto"
LOOPBACK = "127.0.0.1"
OBJECT_STORE_BYTES = 256 << 20  # transcripts are small: a modest shared-memory store

# a socket's path under the session folder: <base>/wcli-ray-XXXXXXXX (18 bytes)
# /session_2026-12-06_05-15-30_973437_1234567 (44) /sockets/plasma_store (21), of 107 at most
_MAX_BASE_BYTES = 107 - 18 - 44 - 21
_REMOTE = re.compile(r"^(ray://)?\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}$")


class ClusterError(WhisperCliError):
    """Ray is missing, or the cluster cannot be started, reached or used."""


@dataclass(frozen=True)
class ClusterInfo:
    """What the driver found: the address it used and the cluster's resources."""

    address: str
    nodes: int
    cpus: float
    gpus: float
    session: str | None = None  # a local instance's folder (its logs), while it runs


def check_address(address: str) -> str:
    """`local`, `auto`, `ray://HOST:PORT` or `HOST:PORT`; raises ClusterError otherwise."""
    if address in (LOCAL, AUTO) or _REMOTE.match(address):
        return address
    raise ClusterError(
        f"{address!r} is not a Ray address: use local, auto or ray://HOST:PORT (Ray Client)"
    )


def import_ray() -> ModuleType:
    """The ray module; ClusterError when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "Ray is not installed: pip install '.[ray]' in the whisper-cli checkout "
            "(or pip install 'ray>=2.40')"
        ) from None
    return ray


@contextlib.contextmanager
def connect(
    address: str, num_cpus: int | None = None, keep_session: bool = False
) -> Iterator[ClusterInfo]:
    """Start or join Ray for the block, and leave it after (a local instance is stopped).

    `num_cpus` is the CPUs a local instance offers (default: this machine's); with
    `keep_session` its session folder (Ray's logs) is kept and not removed.
    """
    check_address(address)
    local = address == LOCAL
    temporary = _session_folder() if local else None
    saved = _set_environment(_local_environment(temporary) if temporary else {})
    handlers = {signum: signal.getsignal(signum) for signum in _signals()}
    ray = None
    stack = contextlib.ExitStack()
    try:
        ray = import_ray()
        stack.enter_context(_errors_to_log())
        try:
            with signals_as_raised():
                _init(ray, address, temporary, num_cpus)
        except Exception as error:
            where = "start Ray on this machine" if local else f"connect to Ray at {address}"
            raise ClusterError(f"cannot {where}: {first_line(error)}") from error
        finally:  # Ray sets its own SIGTERM handler in the driver: keep the caller's
            for signum, handler in handlers.items():
                if handler is not None:
                    signal.signal(signum, handler)
        info = _info(ray, address, temporary)
        if local:
            _check_loopback(ray)
        yield info
    finally:
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        stack.close()
        _restore_environment(saved)
        if temporary is not None and not keep_session:
            shutil.rmtree(temporary, ignore_errors=True)


@contextlib.contextmanager
def signals_as_raised() -> Iterator[None]:
    """Ray's waits run Python's signal handlers, and what a handler raises there (Ctrl-C's
    KeyboardInterrupt, a SIGTERM handler's exception) comes out of Ray's compiled code as a
    SystemError caused by it: raise the handler's exception itself."""
    try:
        yield
    except SystemError as error:
        cause = error.__cause__ or error.__context__
        if cause is not None and not isinstance(cause, Exception):
            raise cause from None
        raise


@contextlib.contextmanager
def _errors_to_log() -> Iterator[None]:
    """Ray's driver prints the errors that raylets publish (a worker that died, and why) on
    standard output, whatever `log_to_driver` says, where they would mix with the data: send
    them to the `whisper_cli.cluster` logger instead (the command line shows it with
    --verbose). This replaces a private function of Ray's driver while connected."""
    try:
        from ray._private import worker as driver
    except ImportError:
        yield
        return
    original = getattr(driver, "print_to_stdstream", None)
    if original is None:
        yield
        return

    def to_log(data: dict, *args: object, **kwargs: object) -> None:
        for line in data.get("lines", ()):
            _log.warning("Ray (%s): %s", data.get("pid", "?"), line)

    driver.print_to_stdstream = to_log
    try:
        yield
    finally:
        driver.print_to_stdstream = original


def _init(ray: ModuleType, address: str, temporary: str | None, num_cpus: int | None) -> None:
    if temporary is None:
        ray.init(
            address=address, log_to_driver=False, configure_logging=False, namespace="whisper-cli"
        )
        return
    ray.init(
        address=LOCAL,
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        _node_ip_address=LOOPBACK,
        _temp_dir=temporary,
        object_store_memory=OBJECT_STORE_BYTES,
        log_to_driver=False,
        configure_logging=False,
        namespace="whisper-cli",
    )


def _session_folder() -> str:
    """A new folder for a local instance's session, in the temporary folder unless that is too
    deep for the Unix sockets Ray makes inside (a socket's path has at most 107 bytes)."""
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) > _MAX_BASE_BYTES and os.path.isdir("/tmp"):
        base = "/tmp"
    return tempfile.mkdtemp(prefix="wcli-ray-", dir=base)


def _local_environment(temporary: str) -> dict[str, str]:
    return {
        # a single machine: the node is 127.0.0.1 and Ray's servers listen there alone
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        # a token that only this process and the Ray processes it starts know, kept in the
        # environment (never written to ~/.ray)
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_TMPDIR": temporary,
    }


def _set_environment(values: dict[str, str]) -> dict[str, str | None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    if "RAY_USAGE_STATS_ENABLED" not in values:
        saved.setdefault("RAY_USAGE_STATS_ENABLED", os.environ.get("RAY_USAGE_STATS_ENABLED"))
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return saved


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _signals() -> list[signal.Signals]:
    return [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])


def _info(ray: ModuleType, address: str, session: str | None) -> ClusterInfo:
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    return ClusterInfo(address, nodes, cpus, gpus, session)


def _check_loopback(ray: ModuleType) -> None:
    """Every node of a local instance must be 127.0.0.1 (ray was imported before the
    environment said otherwise, say): else stop rather than listen on the network."""
    addresses = {node.get("NodeManagerAddress") for node in ray.nodes() if node.get("Alive")}
    if addresses != {LOOPBACK}:
        raise ClusterError(
            f"the local Ray instance registered at {', '.join(sorted(map(str, addresses)))}, "
            f"not {LOOPBACK} alone; stopped it (was ray imported before whisper-cli started it?)"
        )
