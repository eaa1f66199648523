"""Cell claims: at most one process works on a (task, strategy, seed) cell at a time.

Several ``albench run`` processes (on one machine, or on several sharing ``<out>``) may run
overlapping grids into the same ``<out>``. Before a process runs a cell it *claims* it by creating
``<out>/runs/<task>/<strategy>/.seed-<k>.claim`` with exclusive creation (``O_CREAT | O_EXCL``): of
several processes exactly one succeeds. The file names its holder (host, pid, the pid's start
time, a random token) and its modification time is a heartbeat, refreshed every few seconds while
the claim is held. A claim is released (deleted) when the cell is finished or abandoned.

A claim is *stale*, and may be taken over, when its holder is gone:

- same machine (hostname, pid namespace and boot id agree): the pid is dead, a zombie, or now
  belongs to another process (its start time differs);
- otherwise, or if the holder looks alive but has stopped refreshing: its heartbeat is older than
  ``ALBENCH_CLAIM_TIMEOUT`` seconds (default 600).

Taking a stale claim over must not race with another process doing the same: it happens under an
exclusive ``flock`` of ``.claims.lock`` in the same folder (released by the kernel if the process
dies), re-reads the claim under the lock, renames it away only if it is still the stale one, and
then competes for the fresh claim with ``O_EXCL`` like everybody else.

The claim file sits next to the run folder, not inside it, so ``--force`` (which replaces the run
folder) does not drop it; the leaderboard ignores dot files.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

try:  # POSIX; elsewhere take-over runs without the lock (documented in docs/scaling.md)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TIMEOUT_ENV = "ALBENCH_CLAIM_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
#: A claim file that is still empty or unreadable this long after it was created is abandoned.
PARTIAL_GRACE = 30.0

# Tokens of the claims this process holds: a claim naming this pid with another token is a leftover.
_held_tokens: set[str] = set()


def claim_timeout() -> float:
    try:
        return max(1.0, float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


def claim_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.claim"


# -- identity of this process -------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return None


def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to detect a reused pid."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _pid_state(pid: int) -> str | None:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is running (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    return _pid_state(pid) not in ("Z", "X")


def _identity() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _pid_start(os.getpid()),
        "pid_namespace": _pid_namespace(),
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
    }


def _same_machine(info: dict[str, Any]) -> bool:
    me = _identity()
    return all(info.get(k) == me[k] for k in ("host", "pid_namespace", "boot_id"))


# -- reading and judging a claim ----------------------------------------------------------------
def read_claim(path: Path) -> tuple[dict[str, Any], float] | None:
    """``(info, heartbeat_mtime)``, ``({}, mtime)`` for a claim still being written, or ``None``."""
    try:
        mtime = os.stat(path).st_mtime
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        info = {}
    return (info if isinstance(info, dict) else {}), mtime


def stale_reason(info: dict[str, Any], mtime: float, timeout: float | None = None) -> str | None:
    """Why the claim's holder is gone, or ``None`` if it may still be working."""
    timeout = claim_timeout() if timeout is None else timeout
    age = time.time() - mtime
    if not info:
        return f"an unreadable claim {age:.0f} s old" if age > PARTIAL_GRACE else None
    if info.get("token") in _held_tokens:
        return None
    pid = info.get("pid")
    if _same_machine(info) and isinstance(pid, int):
        if pid == os.getpid():
            return f"a leftover claim of this process (pid {pid})"
        if not pid_alive(pid):
            return f"pid {pid} on {info.get('host')} is gone"
        start = _pid_start(pid)
        if info.get("pid_start") and start and start != info["pid_start"]:
            return f"pid {pid} on {info.get('host')} is now another process"
    if age > timeout:
        return f"no heartbeat for {age:.0f} s (> {timeout:.0f} s, {'$' + TIMEOUT_ENV})"
    return None


def describe(info: dict[str, Any]) -> str:
    if not info:
        return "another process"
    started = info.get("started")
    when = time.strftime(" since %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else ""
    return f"pid {info.get('pid')} on {info.get('host')}{when}"


# -- claiming -------------------------------------------------------------------------------------
@dataclass
class Claim:
    """A claim this process holds."""

    path: Path
    token: str
    info: dict[str, Any] = field(default_factory=dict)

    def held(self) -> bool:
        """Whether the claim file is still ours (it is not if a stale take-over replaced it)."""
        found = read_claim(self.path)
        return found is not None and found[0].get("token") == self.token

    def heartbeat(self) -> None:
        with contextlib.suppress(OSError):
            if self.held():
                os.utime(self.path)

    def release(self) -> None:
        _held_tokens.discard(self.token)
        with contextlib.suppress(FileNotFoundError):
            if self.held():
                os.unlink(self.path)


@contextlib.contextmanager
def _takeover_lock(folder: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(folder / ".claims.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _create(path: Path, label: str) -> Claim | None:
    token = uuid.uuid4().hex
    info = {**_identity(), "token": token, "started": time.time(), "cell": label}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return None
    _held_tokens.add(token)
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return Claim(path, token, info)


def _remove_if_stale(path: Path, timeout: float | None) -> bool:
    """Remove the claim at ``path`` if it is stale; True if the path is now free."""
    with _takeover_lock(path.parent):
        found = read_claim(path)
        if found is None:
            return True
        if stale_reason(*found, timeout) is None:
            return False
        grave = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, grave)
        except FileNotFoundError:
            return True
        with contextlib.suppress(OSError):
            os.unlink(grave)
        return True


def try_claim(run_dir: Path, *, label: str = "", timeout: float | None = None) -> Claim | None:
    """Claim the cell whose run folder is ``run_dir``; ``None`` while a live process holds it."""
    path = claim_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(8):
        claim = _create(path, label)
        if claim is not None:
            return claim
        if not _remove_if_stale(path, timeout):
            return None
    return None


def holder(run_dir: Path, *, timeout: float | None = None) -> dict[str, Any] | None:
    """The live holder's claim info, or ``None`` if the cell is free (or its claim is stale)."""
    found = read_claim(claim_path(run_dir))
    if found is None or stale_reason(*found, timeout) is not None:
        return None
    return found[0]


class ClaimKeeper:
    """Holds this process's claims and refreshes their heartbeats from a daemon thread."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval if interval is not None else min(15.0, claim_timeout() / 4)
        self._claims: dict[Path, Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ClaimKeeper":
        self._thread = threading.Thread(target=self._beat, name="albench-claims", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.release_all()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                claims = list(self._claims.values())
            for claim in claims:
                claim.heartbeat()

    def acquire(self, run_dir: Path, label: str = "") -> Claim | None:
        claim = try_claim(run_dir, label=label)
        if claim is not None:
            with self._lock:
                self._claims[claim.path] = claim
        return claim

    def release(self, claim: Claim | None) -> None:
        if claim is None:
            return
        with self._lock:
            self._claims.pop(claim.path, None)
        claim.release()

    def release_all(self) -> None:
        with self._lock:
            claims = list(self._claims.values())
            self._claims.clear()
        for claim in claims:
            claim.release()
