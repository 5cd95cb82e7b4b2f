import pytest
import torch

from reidgraft.files import atomic_write


class InterruptedFile:
    """A file whose n-th write is hit by Ctrl-C, as a SIGINT during torch.save would be."""

    def __init__(self, file, at: int):
        self.file, self.at, self.writes = file, at, 0

    def write(self, data):
        self.writes += 1
        if self.writes == self.at:
            raise KeyboardInterrupt
        return self.file.write(data)

    def flush(self):
        self.file.flush()


def test_ctrl_c_inside_torch_save_stays_a_ctrl_c_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1}, path)
    payload = {"weights": torch.zeros(100_000), "more": torch.ones(100_000)}
    # torch's C++ zip writer turns the interrupt into "RuntimeError: ... unexpected pos"
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda file: torch.save(payload, InterruptedFile(file, at=3)))
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_other_write_errors_are_not_taken_for_ctrl_c(tmp_path):
    def fail(file):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(tmp_path / "x.pt", fail)
    assert not list(tmp_path.iterdir())
