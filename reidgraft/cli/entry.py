"""What the installed commands run: for a CPU run, the mimalloc allocator is preloaded by
re-executing the command (`reidgraft.allocator`) BEFORE the command's module, and with it torch,
is imported, so a command imports torch once; then the command's `main`.

This module imports the standard library and `reidgraft.allocator` (itself standard library
only); the command modules are imported inside each function."""

from __future__ import annotations

import errno
import importlib
import signal
import sys

from ..allocator import reexec_with_mimalloc, requested_device

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report them
EXIT_USER_ERROR = 2

EXIT_FAULT = 1

# What every command reports in one line, `<command>: <what is wrong and the fix>`, instead of a
# traceback, before any work where it can: a ValueError (the input is wrong: ConfigError,
# DemoError, a bad checkpoint, ...) or an OSError (missing data, an unreadable image, a folder
# that cannot be written). The exit status is 2, or 1 for a fault of the machine rather than of
# the input (an error's own `exit_status`, as a full disk's; an OSError of FAULT_ERRNOS). The
# prefix is the command's name as `reidgraft <command>` takes it. A closed stdout (`| head`) is
# no error: `_run` ends the command quietly.
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError)
FAULT_ERRNOS = frozenset({errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM})


def report_error(command: str, error: BaseException, where: str = "") -> int:
    """Print `command: [where]first line of the error` to stderr; return the exit status. A
    broken pipe is raised again, for `_run`."""
    if isinstance(error, BrokenPipeError):
        raise error
    text = str(error).strip()
    message = text.splitlines()[0] if text else type(error).__name__
    print(f"{command}: {where}{message}", file=sys.stderr)
    if isinstance(error, OSError) and error.errno in FAULT_ERRNOS:
        return EXIT_FAULT
    return getattr(error, "exit_status", EXIT_USER_ERROR)


_signalled: list[int] = []  # SIGTERM was received (a handler's exception can be swallowed, as Gradio's)


def _terminate(signum, frame) -> None:
    from ..files import Terminated

    _signalled.append(signum)
    raise Terminated


def terminated() -> bool:
    """Whether this process received SIGTERM."""
    return bool(_signalled)


def interrupt_exit(interrupt: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by Ctrl-C (130) or by SIGTERM (143)."""
    from ..files import Terminated

    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


def _stdout_closed() -> bool:
    """Whether nobody reads stdout any more: its pipe's other end is closed (asked of the file
    itself, as a failed write may have emptied Python's buffer, so a flush would pass)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError):  # (no file number: a replaced stdout)
        return False


def version() -> str:
    """reidgraft's installed version (from its metadata; no torch imported)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("reidgraft")
    except PackageNotFoundError:  # (run from a checkout that was never installed)
        return "unknown (not installed)"


def _run(command: str, allocator: bool) -> int:
    if sys.argv[1:] == ["--version"]:
        print(f"reidgraft-{command} (reidgraft {version()})")
        return 0
    if allocator:
        try:
            reexec_with_mimalloc(requested_device(sys.argv))
        except ValueError as error:
            return report_error(command, error)
    # one signal policy for every command: SIGTERM is handled as Ctrl-C, wherever it lands
    signal.signal(signal.SIGTERM, _terminate)
    from ..files import DiskFull

    try:
        return importlib.import_module(f"reidgraft.cli.{command}").main()
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly, as shell tools do
        import os

        if not _stdout_closed():
            raise  # another pipe (a socket, a child process): a fault to be seen
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error at exit)
        return 128 + signal.SIGPIPE
    except DiskFull as full:  # a fault of the machine, not of the input: exit 1, one line
        return report_error(command, full)
    except KeyboardInterrupt as interrupt:  # (train says more itself: what was saved)
        how = "terminated" if interrupt_exit(interrupt) == EXIT_TERMINATED else "interrupted"
        print(
            f"\n{command}: {how}; temporary files were removed, nothing half-written was kept",
            file=sys.stderr,
        )
        return interrupt_exit(interrupt)


# each command, and whether it preloads the CPU allocator (the commands that train or embed much)
COMMANDS = {
    "train": True,
    "evaluate": True,
    "compare": True,
    "analyze": False,
    "demo": False,
    "export": False,
    "identity": True,
}


def main() -> int:
    """`reidgraft <command> ...`, the same as `reidgraft-<command> ...`."""
    usage = f"usage: reidgraft {{{','.join(COMMANDS)}}} ... (each has --help), or reidgraft --version"
    arguments = sys.argv[1:]
    if not arguments or arguments[0] in ("-h", "--help"):
        print(usage, file=sys.stdout if arguments else sys.stderr)
        return 0 if arguments else 2
    if arguments[0] == "--version":
        print(f"reidgraft {version()}")
        return 0
    command = arguments[0]
    if command not in COMMANDS:
        print(
            f"reidgraft: unknown command {command!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    sys.argv = [f"reidgraft-{command}", *arguments[1:]]  # (each command's parser names itself)
    return _run(command, COMMANDS[command])


def train() -> int:
    return _run("train", allocator=True)


def evaluate() -> int:
    return _run("evaluate", allocator=True)


def compare() -> int:
    return _run("compare", allocator=True)


def analyze() -> int:
    return _run("analyze", allocator=False)


def demo() -> int:
    return _run("demo", allocator=False)


def export() -> int:
    return _run("export", allocator=False)


def identity() -> int:
    return _run("identity", allocator=True)
