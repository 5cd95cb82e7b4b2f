"""Atomic writes: a temporary file in the same folder, flushed, then renamed over the old one.
An interrupted write (Ctrl-C, a full disk) leaves the previous file intact. Keyed caches, and
the one fingerprint scheme behind every key."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _read_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting it to read it
    would briefly affect files other threads create)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files we write get the mode a plain open() would give them (0644 under the usual umask 022);
# mkstemp makes its files 0600, readable by their owner alone.
FILE_MODE = 0o666 & ~_read_umask()


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None when it does not
    run or this system has no /proc: with the pid, it names one process, even where pids are
    reused (a container's trainer is pid 1 after every restart)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[19] if len(fields) > 19 else None


def new_temporary(path: Path) -> Path:
    """An empty temporary sibling of `path` (`.NAME.<pid>-<start>.<random>.tmp`: the writer's
    process tells a leftover from a write in progress, `writer_alive`), with a plain file's mode."""
    writer = f"{os.getpid()}-{process_start(os.getpid()) or 0}"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{writer}.", suffix=".tmp", dir=path.parent)
    os.fchmod(handle, FILE_MODE)
    os.close(handle)
    return Path(temporary)


MAX_PID = 4_194_304  # Linux's largest (pid_max's ceiling): a longer number is no process id


def writer_alive(temporary: Path) -> bool:
    """Whether the process that `new_temporary` named in `temporary` still runs on this machine
    (so the file is a write in progress, not a leftover). Names without a process id, from
    before it was recorded, have no live writer."""
    parts = temporary.name.removesuffix(".tmp").split(".")
    pid, _, start = (parts[-2] if len(parts) >= 3 else "").partition("-")
    if not pid.isdigit() or not 0 < int(pid) <= MAX_PID:
        return False
    if start not in ("", "0") and Path("/proc").is_dir():  # the same pid, another process: dead
        return process_start(int(pid)) == start
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call `write(file)` on a temporary sibling of `path`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handling = sys.exc_info()[1]  # an exception being handled while this runs, if any
    temporary = new_temporary(path)
    try:
        with open(temporary, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:  # Ctrl-C included: never leave the temporary file behind
        temporary.unlink(missing_ok=True)
        interrupt = interrupt_inside(error, handling)
        if interrupt is not None:
            raise type(interrupt)() from None
        if no_space_inside(error, handling):
            raise DiskFull(path) from None
        raise


class DiskFull(OSError):
    """A write that found its device full (ENOSPC, or a quota: EDQUOT), named by the file it was
    writing: what a user must free or move. The half-written file is already removed."""

    exit_status = 1  # a fault of the machine, not of the user's input (cli/entry.py)

    def __init__(self, path: Path | str):
        super().__init__(
            errno.ENOSPC,
            f"no space left on the device holding {path}; nothing half-written was kept: "
            "free space there (or choose another folder) and run again",
            str(path),
        )

    def __str__(self) -> str:
        return self.strerror


def no_space_inside(error: BaseException, handling: BaseException | None = None) -> bool:
    """Whether `error` is, or was raised while handling, a write's full-disk error. Writers in C++
    (torch.save's zip writer) report it as their own RuntimeError ("unexpected pos ...") with the
    OSError only in its context; an exception already being handled (`handling`) is not it."""
    seen = set()
    while error is not None and error is not handling and id(error) not in seen:
        if isinstance(error, DiskFull) or (
            isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
        ):
            return True
        seen.add(id(error))
        error = error.__context__
    return False


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `docker stop`, systemd and `timeout` send), raised where the process is, so
    that it is handled as Ctrl-C is: temporary files removed, one line, exit 143 (`cli/entry.py`)."""


def interrupt_inside(error: BaseException, handling: BaseException | None = None) -> KeyboardInterrupt | None:
    """The Ctrl-C that `error` disguises, if it does. torch.save writes through a C++ zip writer that
    calls back into Python; a KeyboardInterrupt raised in that callback surfaces as the writer's
    RuntimeError ("unexpected pos ..."), with the interrupt only in its context. Only a
    RuntimeError qualifies, and only an interrupt raised during this write: an exception that was
    already being handled (`handling`, and what led to it) is not looked into. Returns the
    interrupt (a `Terminated` for SIGTERM), or None."""
    if not isinstance(error, RuntimeError):
        return None
    seen = set()
    while error is not None and error is not handling and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__context__
    return None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda file: file.write(text), mode="w")


def atomic_write_json(path: Path, data: Any) -> None:
    """Standard JSON only: a NaN or an infinity (which `json` would write as bare `NaN`, invalid
    for every other reader) is a ValueError naming the file, and nothing is written."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False)
    except ValueError as error:
        raise ValueError(
            f"{path} would hold a value JSON cannot represent ({error}); nothing was written"
        ) from None
    atomic_write_text(path, text + "\n")


def arrays_digest(arrays: Mapping[str, Any]) -> str:
    """A hash of named arrays: names, dtypes, shapes and contents."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(memoryview(array).cast("B") if array.size else b"")  # (no copy of a large array)
    return digest.hexdigest()


def write_keyed_arrays(path: Path, key: str, arrays: Mapping[str, Any]) -> None:
    """Save `arrays` (an .npz file, written atomically) under `key`: a text naming everything
    they were computed from, format included, so that a reader takes them only for that key;
    with a digest of their contents, so that an edited or damaged file is not taken either."""
    reserved = sorted({"key", "digest", "file", "allow_pickle"} & set(arrays))  # ours, np.savez's own
    if reserved:
        raise ValueError(f"array name {reserved[0]!r} is reserved; choose another")
    digest = arrays_digest(arrays)
    # straight into the temporary file: no second copy of a large cache in memory
    atomic_write(
        Path(path), lambda file: np.savez(file, key=np.array(key), digest=np.array(digest), **arrays)
    )


def read_keyed_arrays(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays `write_keyed_arrays` saved at `path`, loaded into memory, or None when there
    are none to use: no file, one saved under another key, or a damaged or edited one (its
    contents no longer match their digest; for a cache: the work is simply done again)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return None
            arrays = {name: stored[name] for name in stored.files if name not in ("key", "digest")}
            if str(stored["digest"]) != arrays_digest(arrays):
                return None
            return arrays
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


OUTPUTS_MANIFEST = ".reidgraft-outputs.json"  # the files a command wrote into a folder, with digests


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(folder: Path) -> dict[str, str]:
    try:
        found = json.loads((Path(folder) / OUTPUTS_MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def check_own_outputs(folder: Path, names: Sequence[str], what: str, ours: bool = False) -> None:
    """ValueError (one line) when a file or folder among `names` exists in `folder` and was not
    written there by reidgraft, or was changed since (its digest in the folder's manifest no
    longer matches): a user's file is never overwritten. `ours`: the folder is reidgraft's own
    (a run folder), where files without a manifest entry are older reidgraft outputs."""
    manifest = _manifest(folder)
    for name in names:
        path = Path(folder) / name
        if not path.exists():
            continue
        recorded = manifest.get(name)
        if (recorded is None and ours) or recorded == CLAIMED:  # (CLAIMED: a write that stopped)
            continue
        if recorded is not None and (
            path.is_dir() if recorded == "folder" else path.is_file() and _file_digest(path) == recorded
        ):
            continue
        reason = "was changed since reidgraft wrote it" if recorded else "was not written by reidgraft"
        raise ValueError(f"{what} {folder}: {path} {reason}; choose another {what}, or move it away")


CLAIMED = "being written"


def claim_outputs(folder: Path, names: Sequence[str]) -> None:
    """Note in `folder`'s manifest, before writing them, that `names` are reidgraft's to write
    (after `check_own_outputs`): a write stopped half-way leaves them reidgraft's, not a user's."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    manifest = _manifest(folder)
    atomic_write_text(
        Path(folder) / OUTPUTS_MANIFEST,
        json.dumps({**manifest, **dict.fromkeys(names, CLAIMED)}, indent=1, sort_keys=True) + "\n",
    )


def record_outputs(folder: Path, names: Sequence[str]) -> None:
    """Note in `folder`'s manifest that reidgraft wrote `names` there (as they are now)."""
    manifest = _manifest(folder)
    for name in names:
        path = Path(folder) / name
        if path.is_dir():
            manifest[name] = "folder"
        elif path.is_file():
            manifest[name] = _file_digest(path)
        else:
            manifest.pop(name, None)
    atomic_write_text(Path(folder) / OUTPUTS_MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def check_writable(folder: Path, what: str = "--output", fix: str | None = None) -> None:
    """ValueError (one line) unless files can be created in `folder`, or in the folder that would
    hold it when it does not exist yet. Checked before any work, so nothing is computed in vain.
    Probing is the only honest test: as root a read-only mode still lets writes through, while a
    read-only file system does not. `fix`: what to do instead (default: choose another `what`)."""
    folder = Path(folder)
    fix = fix or f"choose another {what}"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what} {folder}: {existing} is a file, not a folder; {fix}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ValueError(f"{what} {folder} cannot be written ({error.strerror or error}); {fix}") from None


class Fingerprint:
    """The one hashing scheme for everything reidgraft must recognise again (a run's data, a
    recipe, a model's weights, a gallery, a cache's key): SHA-256 of the parts in order, as
    given (text as UTF-8), in hex. Callers separate their parts themselves, so a fingerprint
    recorded by an older version (a run's `items_sha256`) is computed the same way today."""

    def __init__(self, *parts: str | bytes):
        self._hash = hashlib.sha256()
        self.add(*parts)

    def add(self, *parts: str | bytes) -> Fingerprint:
        for part in parts:
            self._hash.update(part.encode() if isinstance(part, str) else part)
        return self

    def hex(self) -> str:
        return self._hash.hexdigest()


def fingerprint(*parts: str | bytes) -> str:
    return Fingerprint(*parts).hex()


def json_fingerprint(value: Any) -> str:
    """The fingerprint of `value` written as JSON with sorted keys (anything else as its str)."""
    return fingerprint(json.dumps(value, sort_keys=True, default=str))


def files_fingerprint(paths: Sequence[str | Path], root: str | Path) -> str:
    """A hash of the images' names (relative to `root`) and bytes, in order: the same gallery moved
    elsewhere keeps its fingerprint, one changed, added, removed or renamed image changes it."""
    digest = Fingerprint()
    root = Path(root)
    for path in paths:
        path = Path(path)
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        data = path.read_bytes()
        digest.add(f"{name}\0{len(data)}\0", data)
    return digest.hex()


def state_fingerprint(state: Mapping[str, object], extra: Iterable[object] = ()) -> str:
    """A hash of a model's state (every tensor's name, dtype, shape and bytes) and of `extra`
    (architecture, input size, metric...), so features from another model never count as cached."""
    import torch  # (here: the leaves import no torch when loaded)

    digest = Fingerprint(*(f"{value!r}\0" for value in extra))
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        # A byte view of any dtype (bfloat16 included, which numpy lacks).
        digest.add(
            f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0",
            tensor.reshape(-1).view(torch.uint8).numpy().tobytes(),
        )
    return digest.hex()
