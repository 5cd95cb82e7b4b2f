"""mimalloc for CPU runs: the command runs itself again once with the library preloaded."""

import os
import subprocess
import sys

import pytest

from reidgraft.allocator import mimalloc_library, requested_device

SNIPPET = (
    "import sys; from reidgraft.allocator import reexec_with_mimalloc, mimalloc_loaded; "
    "reexec_with_mimalloc(sys.argv[1]); print(mimalloc_loaded())"
)
needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")


def loaded_after(device: str, **environment) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("REIDGRAFT_ALLOCATOR")}
    result = subprocess.run(
        [sys.executable, "-c", SNIPPET, device], capture_output=True, text=True, env={**env, **environment},
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@needs_linux
def test_a_cpu_run_gets_mimalloc_and_the_opt_out_keeps_the_system_allocator():
    assert mimalloc_library() is not None, "cmeel-mimalloc is a dependency on Linux"
    assert loaded_after("cpu") == "True"
    assert loaded_after("cpu", REIDGRAFT_ALLOCATOR="system") == "False"
    assert loaded_after("cuda") == "False"  # GPU runs keep CUDA's and glibc's allocators


def test_the_device_flag_is_read_from_the_command_line():
    assert requested_device(["train.py", "--device", "cpu", "--epochs", "2"]) == "cpu"
    assert requested_device(["train.py", "--device=cuda"]) == "cuda"
    assert requested_device(["train.py", "--epochs", "2"]) is None


def test_a_bad_choice_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "tools/train.py", "--help"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "REIDGRAFT_ALLOCATOR": "jemalloc"}, cwd=os.path.dirname(os.path.dirname(__file__)),
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "REIDGRAFT_ALLOCATOR='jemalloc': choose mimalloc or system" in result.stderr
