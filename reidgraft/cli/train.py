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

from ..config import ConfigError, TrainConfig, add_config_arguments, given_fields, resolve_config
from ..engine.logging import metrics_table, report_lines
from ..engine.run_dir import RunDir
from ..engine.runs import default_output, start_run
from .entry import USER_ERRORS, interrupt_exit, report_error

# (torch.distributed's glue, `engine.distributed`, is imported where it is used: a mistyped
# setting or missing data is said before torch loads)


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

    if not distributed:
        config.output = checked()
        return config
    from ..engine.distributed import leader_decides

    # every rank writes into rank 0's folder, whatever its own clock said
    config.output = leader_decides(checked)
    return config


def resumed_run(args: argparse.Namespace, rank: int | None) -> tuple[TrainConfig, dict]:
    if args.config:
        raise ConfigError("--config cannot be combined with --resume (the run keeps its own config)")
    run = RunDir(args.resume)
    if rank is None:
        payload = run.resume_payload()
    else:
        from ..engine.distributed import smallest_over_ranks

        payload = run.resume_payload(rank, smallest_over_ranks)
    return run.resume_config(payload, given_fields(args)), payload


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config, rank, trainer = None, None, None
    try:
        if args.print_config:
            return print_config(args)
        group = None
        if args.distributed:
            from ..engine.distributed import OneModelPerProcess, join_process_group

            rank = join_process_group(args.models, args.device, args.ring_timeout)
            group = OneModelPerProcess(rank, world=int(os.environ["WORLD_SIZE"]))
            args.models = group.world
        say = print if rank in (None, 0) else (lambda *parts, **options: None)
        if args.resume:
            config, payload = resumed_run(args, rank)
            say(f"recipe: none (resumed: {RunDir(config.output).config_file} holds the run's settings)")
        else:
            config, payload = new_run(args, group is not None, say), None
        trainer = start_run(config, payload=payload, group=group, log=say)
        trainer.fit()
    except (*USER_ERRORS, RuntimeError) as error:
        if isinstance(error, RuntimeError):
            from ..engine.distributed import is_distributed_failure

            if not is_distributed_failure(error):
                raise
        where = "" if rank is None or str(error).startswith(f"rank {rank}:") else f"rank {rank}: "
        return report_error("train", error, where)
    except KeyboardInterrupt as interrupt:
        code = interrupt_exit(interrupt)
        how = "terminated" if code == 143 else "interrupted"
        print(f"\ntrain: {how}; {interrupted(config, rank)}", file=sys.stderr)
        return code
    finally:
        if rank is not None:
            from ..engine.distributed import leave_process_group

            leave_process_group()
    if rank in (None, 0):
        best = trainer.best() if trainer.task.kind == "classification" else None
        for line in metrics_table(trainer.final, trainer.task.metric_keys, best, trainer.task.primary):
            print(line)
        for line in report_lines(trainer.report(), trainer.task.primary):
            print(line)
        print(f"metrics: {RunDir(config.output).metrics}")
    return 0


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
