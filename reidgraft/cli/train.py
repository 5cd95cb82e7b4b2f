"""Train K models side by side (re-ID or classification) and graft them at every epoch end.

    reidgraft-train                                          # synthetic quick recipe, 4 models
    reidgraft-train --dataset market1501 --models 4          # the papers' Market-1501 ResNet50 recipe
    reidgraft-train --config duke_mobilenetv2 --no-graft
    reidgraft-train --dataset cifar100 --arch mobilenetv2 --models 4   # the papers' CIFAR recipe
    reidgraft-train --dataset digits                         # classification, nothing to download
    torchrun --nproc_per_node 4 tools/train.py --dataset market1501 --distributed   # one model per process
    reidgraft-train --resume runs/RUN --epochs 80

(`python tools/train.py` is the same program.) Settings come from the defaults shown below, then
the recipe (--config, or the one registered for --dataset and --arch: synthetic_quick when
neither is given), then the flags. A run prints the recipe it took and every setting that
differs from these defaults, with its source; --print-config prints them and the whole resolved
config without training.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import ConfigError, TrainConfig, add_config_arguments, given_fields, resolve_config
from ..data import REID, DataMissingError, ReidSplits
from ..engine import RunDir, Trainer
from ..engine.distributed import (
    OneModelPerProcess,
    check_distributed,
    is_distributed_failure,
    join_process_group,
    leader_decides,
    leave_process_group,
    smallest_over_ranks,
)
from ..engine.logging import metrics_table, report_lines
from ..engine.preflight import preflight
from ..engine.run_dir import check_same_data
from ..engine.runs import default_output, load_data
from ..images import ImageReadError
from ..population.registry import describe_run
from .entry import interrupt_exit


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reidgraft-train",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("what to run")
    run.add_argument(
        "--config",
        help="a YAML recipe, or the name of a shipped one such as market1501_resnet50_bot (default: the one "
        "registered for --dataset and --arch)",
    )
    run.add_argument("--resume", metavar="RUN_DIR", help="continue this run (optionally to --epochs N)")
    run.add_argument(
        "--distributed", action="store_true",
        help="under torchrun: one model per process, the ring grafted over torch.distributed",
    )  # fmt: skip
    run.add_argument(
        "--print-config", action="store_true",
        help="print the recipe, the settings that differ from the defaults and the whole resolved "
        "config (YAML), then stop: nothing is trained or written",
    )  # fmt: skip
    add_config_arguments(parser)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def resolved(args: argparse.Namespace) -> tuple[TrainConfig, list[str]]:
    """A new run's config (its output not yet chosen) and the lines saying where it came from."""
    found = resolve_config(args.config, **given_fields(args))
    return found.config, found.lines()


def print_config(args: argparse.Namespace) -> int:
    import dataclasses

    import yaml

    if args.resume:
        raise ConfigError(
            "--print-config is for a new run; a resumed run keeps RUN_DIR/config.yaml, with the resumable "
            "flags you give (such as --epochs) over it"
        )
    config, lines = resolved(args)
    for line in lines:
        print(line)
    values = dataclasses.asdict(config)
    values["output"] = config.output or "runs/<dataset>-<arch>-k<models>-<time> (made at the start)"
    print("---")
    print(yaml.safe_dump(values, sort_keys=False).rstrip())
    return 0


def new_run(args: argparse.Namespace, distributed: bool, say=print) -> TrainConfig:
    """The config of a new run whose folder may be written (checked by rank 0 alone in a
    distributed run, before any rank writes); says where its settings came from."""
    config, lines = resolved(args)
    for line in lines:
        say(line)
    config.output = config.output or default_output(config)

    def checked() -> str:
        RunDir(config.output).check_new()
        return config.output

    # every rank writes into rank 0's folder, whatever its own clock said
    config.output = leader_decides(checked) if distributed else checked()
    return config


def resumed_run(args: argparse.Namespace, rank: int | None) -> tuple[TrainConfig, dict]:
    if args.config:
        raise ConfigError("--config cannot be combined with --resume (the run keeps its own config)")
    run = RunDir(args.resume)
    payload = run.resume_payload(rank, smallest_over_ranks if rank is not None else None)
    return run.resume_config(payload, given_fields(args)), payload


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config, rank, trainer = None, None, None
    try:
        if args.print_config:
            return print_config(args)
        group = None
        if args.distributed:
            rank = join_process_group(args.models, args.device, args.ring_timeout)
            group = OneModelPerProcess(rank, world=int(os.environ["WORLD_SIZE"]))
            args.models = group.world
        say = print if rank in (None, 0) else (lambda *parts, **options: None)
        if args.resume:
            config, payload = resumed_run(args, rank)
            say(f"recipe: none (resumed: {RunDir(config.output).config_file} holds the run's settings)")
        else:
            config, payload = new_run(args, group is not None, say), None
        # names, devices, precision, the weights file (found, or downloaded by rank 0 first) and
        # the data's presence, before any data is read
        if group is not None:
            check_distributed(config)
            leader_decides(lambda: preflight(config) and None)
        plan = preflight(config)
        say(f"initial weights: {plan.weights.description}")
        if plan.task == REID and config.dataset != "synthetic" and plan.weights.source is None:
            say(f"note: {config.arch} starts from random weights; the papers' numbers assume ImageNet's")
        data = load_data(config, log=say)
        if payload is not None:
            check_same_data(
                payload, data.fingerprint() if isinstance(data, ReidSplits) else None, config.output
            )
        trainer = Trainer(config, data, Path(config.output), log=say, group=group, plan=plan)
        if payload is not None:
            trainer.load_state(payload)
            say(f"resuming {config.output} after epoch {trainer.epoch}, to epoch {config.epochs}")
        say(describe(config, trainer, distributed=group is not None))
        trainer.fit()
    except (ConfigError, DataMissingError, ImageReadError, ValueError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and not is_distributed_failure(error):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        where = "" if rank is None or message.startswith(f"rank {rank}:") else f"rank {rank}: "
        print(f"train: {where}{message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        code = interrupt_exit(interrupt)
        how = "terminated" if code == 143 else "interrupted"
        print(f"\ntrain: {how}; {interrupted(config, rank)}", file=sys.stderr)
        return code
    finally:
        if rank is not None:
            leave_process_group()
    if rank in (None, 0):
        best = trainer.best() if trainer.task.kind == "classification" else None
        for line in metrics_table(trainer.final, trainer.task.metric_keys, best, trainer.task.primary):
            print(line)
        for line in report_lines(trainer.report(), trainer.task.primary):
            print(line)
        print(f"metrics: {RunDir(config.output).metrics}")
    return 0


def describe(config: TrainConfig, trainer: Trainer, distributed: bool) -> str:
    mode = describe_run(config)
    if distributed:
        where = "one per process over torch.distributed"
        return f"{config.models} x {config.arch} ({mode}), {where}; run: {config.output}"
    rates = ", ".join(f"{m.initial_lr:.3g}" for m in trainer.members)
    return f"{config.models} x {config.arch} ({mode}), initial lr {rates}; run: {config.output}"


def interrupted(config: TrainConfig | None, rank: int | None) -> str:
    """What a Ctrl-C left behind, and how to continue."""
    if config is None:
        return "no epoch had completed, nothing was saved"
    checkpoint = RunDir(config.output).checkpoint(rank)
    if not checkpoint.exists():
        return "no epoch had completed, nothing was saved"
    again = f"--resume {config.output}" + (" --distributed under torchrun" if rank is not None else "")
    return f"the last complete epoch is saved in {checkpoint} (continue with {again})"


if __name__ == "__main__":
    from . import entry

    sys.exit(entry.train())
