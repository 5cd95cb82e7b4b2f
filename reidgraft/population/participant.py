"""What every participant of a run does and when the trainer calls it. A participant is the
population method (what K models trained side by side exchange) or a companion of it (EMA
copies); the trainer holds a list of them and knows none by name.

One training run, in order (docs/method.md sections 4 and 10):
- once, before training: `plan_run(epochs, steps_per_epoch)`;
- each step, for each model k: `step_loss(k, logits)`, a term added to model k's loss (None:
  none), given the logits of this step's batch: every model's when the method shares a batch,
  model k's alone otherwise (the others None: they saw other images);
- once all K models stepped: `after_step(step, lr_shares)`;
- at an epoch end, with `completed` epochs done: train, evaluate (when due: `extra_evaluations` adds
  models to evaluate beside the trained ones), save, then `exchange(completed)` when
  `exchanges_after(completed)` (the authors' order; never after the last epoch). With
  `eval_after_graft`, the exchange comes first and also follows the last epoch. The same number
  reaches both calls on both orders;
- what an exchange did is filed in its epoch's record under `record_key`, and `describe`
  words it for the console;
- `state_dict`/`load_state_dict` travel in the checkpoint (under `name`), so a resumed run
  continues what a straight one would have done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import Tensor, nn

BatchSource = Callable[[], Iterable[Tensor]]  # fresh training image batches, for BN statistics


class Participant:
    """The base of every participant, and on its own the method that exchanges nothing
    (`--population none`: K independent models)."""

    name = "none"  # its checkpoint entry; for a population method, its --population name
    section = "population"  # the metrics.json entry its settings go to
    record_key = "exchange"  # an epoch record's entry for what its exchange did
    evaluates: str | None = None  # the record entries of its extra models: <evaluates>_metrics
    evaluates_each_model = False  # its extra models are one per trained model (else one in all)

    def settings(self) -> dict[str, Any]:
        """What metrics.json records of it."""
        return {"method": self.name}

    def plan_run(self, epochs: int, steps_per_epoch: int) -> None:
        """The run's length, told once before training (a pull scaled to it, say)."""

    def step_loss(self, k: int, logits: Sequence[Tensor | None]) -> Tensor | None:
        """Model k's extra loss term for this step (None: none)."""
        return None

    def after_step(self, step: int, lr_shares: Sequence[float]) -> None:
        """After every model took step `step` (0-based within the epoch); `lr_shares`: each
        model's learning rate as a share of its initial one."""

    def exchanges_after(self, completed: int) -> bool:
        """Whether the models exchange once `completed` epochs are done."""
        return False

    def exchange(self, completed: int) -> Any:
        """The epoch end's exchange (in place); what to file under `record_key`. When the method
        runs one model per process, one entry per model this process holds."""
        return None

    def describe(self, record: dict[str, Any]) -> str | None:
        """A console line for the exchange filed in `record` (its epoch and `record_key`), or
        None to say nothing."""
        return None

    def extra_evaluations(self, last: bool, bn_batches: BatchSource) -> list[nn.Module]:
        """Models to evaluate beside the trained ones at this evaluation (`last`: the run's last
        epoch), their batch-norm statistics ready; [] for none. The random generators are
        restored around the call and the evaluation."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs of it ({} when nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()` as saved ({} when the checkpoint holds none)."""
