"""Train K models side by side (re-ID or classification) and graft them at every epoch end.

    python tools/train.py                                   # synthetic quick recipe, 4 models
    python tools/train.py --dataset market1501 --models 4   # the paper's Market-1501 ResNet50 recipe
    python tools/train.py --config configs/duke_mobilenetv2.yaml --no-graft
    python tools/train.py --dataset cifar100 --arch mobilenetv2 --models 4   # the papers' CIFAR recipe
    python tools/train.py --dataset digits                  # classification, nothing to download
    torchrun --nproc_per_node 4 tools/train.py --dataset market1501 --distributed   # one model per process
    python tools/train.py --resume runs/RUN --epochs 80

Every field of the config can be given as a flag (`batch_size` as `--batch-size`); flags override
the recipe. Without --config the recipe is chosen from --dataset and --arch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reidgraft.config import (  # noqa: E402
    FIELDS,
    ConfigError,
    TrainConfig,
    build_config,
    load_yaml,
    recipe_for,
)
from reidgraft.data import DATASETS, DataMissingError  # noqa: E402
from reidgraft.data.loaders import ImageReadError  # noqa: E402
from reidgraft.engine import CHECKPOINT_NAME, Trainer, load_checkpoint  # noqa: E402
from reidgraft.engine.runs import check_names, load_data  # noqa: E402

# What may change when a run is resumed; the run's identity may not.
RESUMABLE = {
    "epochs", "workers", "device", "eval_every", "eval_batch_size", "deterministic", "download",
    "ring_timeout",
}  # fmt: skip
IDENTITY = ("dataset", "arch", "models")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="a YAML recipe (default: chosen from --dataset and --arch)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run (optionally to --epochs N)")
    parser.add_argument(
        "--distributed", action="store_true",
        help="under torchrun: one model per process, the ring grafted over torch.distributed",
    )  # fmt: skip
    defaults = TrainConfig()
    for name in FIELDS:
        flag, default = "--" + name.replace("_", "-"), getattr(defaults, name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif isinstance(default, list):
            parser.add_argument(flag, nargs="+", default=None)
        elif isinstance(default, int | float):
            parser.add_argument(flag, type=type(default), default=None)
        else:
            parser.add_argument(flag, default=None)
    return parser.parse_args(argv)


def given_fields(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}


def default_output(config: TrainConfig) -> str:
    mode = "" if config.graft or config.models == 1 else "-nograft"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{config.dataset}-{config.arch}-k{config.models}{mode}-{stamp}")


def prepare_new_run(args: argparse.Namespace) -> TrainConfig:
    recipe = Path(args.config) if args.config else recipe_for(args.dataset, args.arch)
    config = build_config(load_yaml(recipe), **given_fields(args))
    config.output = config.output or default_output(config)
    if args.distributed:  # every rank must write into rank 0's folder, whatever its clock said
        import torch.distributed as dist

        chosen = [config.output]
        dist.broadcast_object_list(chosen, src=0)
        config.output = chosen[0]
    if any((Path(config.output) / where / CHECKPOINT_NAME).exists() for where in (".", "rank0")):
        raise ConfigError(
            f"{config.output} already holds a run; continue it with --resume {config.output} "
            "or choose another --output"
        )
    return config


def prepare_resume(args: argparse.Namespace, rank: int | None) -> tuple[TrainConfig, dict]:
    payload = load_checkpoint(
        Path(args.resume) if rank is None else common_epoch_checkpoint(args.resume, rank)
    )
    saved = payload["config"]
    if payload.get("ranks") and rank is None:
        raise ConfigError(
            f"{args.resume} is a distributed run; resume it under torchrun with --distributed "
            f"({payload['ranks']} processes)"
        )
    given = given_fields(args)
    for name in IDENTITY:
        if name in given and given[name] != saved[name]:
            raise ConfigError(
                f"cannot resume {args.resume} with {name} {given[name]!r}: that run trained "
                f"{name} {saved[name]!r}; start a new run instead"
            )
    changed = sorted(n for n in set(given) - RESUMABLE - set(IDENTITY) if given[n] != saved.get(n))
    if changed:
        raise ConfigError(
            f"cannot change {changed[0]} when resuming; only {', '.join(sorted(RESUMABLE))} may change"
        )
    if args.config:
        raise ConfigError("--config cannot be combined with --resume (the run keeps its own config)")
    config = build_config(saved, **{n: v for n, v in given.items() if n in RESUMABLE})
    config.output = str(Path(args.resume))
    if config.epochs < payload["epoch"]:
        raise ConfigError(f"{args.resume} has already trained {payload['epoch']} epochs; ask for more")
    return config, payload


def join_process_group(args: argparse.Namespace) -> int:
    """Join torchrun's process group (NCCL for CUDA, gloo on CPU); return this process's rank."""
    import os
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError(
            "--distributed runs under torchrun: torchrun --nproc_per_node K tools/train.py ... --distributed"
        )
    world = int(os.environ["WORLD_SIZE"])
    if args.models is not None and args.models != world:
        raise ConfigError(f"--models {args.models} but torchrun started {world} processes; one model each")
    args.models = world
    cuda = args.device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    timeout = args.ring_timeout or TrainConfig.ring_timeout
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout))
    return dist.get_rank()


def common_epoch_checkpoint(run_dir: str, rank: int) -> Path:
    """This rank's checkpoint of the last epoch that every rank saved (a rank may be one ahead,
    and keeps the checkpoint before its last for that case)."""
    import torch
    import torch.distributed as dist

    folder = Path(run_dir) / f"rank{rank}"
    latest, previous = folder / CHECKPOINT_NAME, folder / "checkpoint-previous.pt"
    if not latest.is_file() and previous.is_file():  # stopped between keeping one and writing the next
        latest = previous
    epoch = load_checkpoint(latest)["epoch"]
    common = torch.tensor([epoch])
    dist.all_reduce(common, op=dist.ReduceOp.MIN)
    if epoch == int(common):
        return latest
    if previous.is_file() and load_checkpoint(previous)["epoch"] == int(common):
        return previous
    raise ConfigError(f"rank {rank} has no checkpoint of epoch {int(common)}, the last one every rank saved")


def print_table(trainer: Trainer) -> None:
    keys = trainer.task.metric_keys
    best = trainer.best() if trainer.task.kind == "classification" else None
    header = f"{'model':>5}  " + "  ".join(f"{key:>7}" for key in keys)
    if best:
        header += f"  best {trainer.task.primary} (epoch, chosen on the test set)"
    print(header)
    for k, row in enumerate(trainer.final):
        line = f"{row['model']:>5}  " + "  ".join(f"{100 * row[key]:>6.2f}%" for key in keys)
        if best:
            line += f"  {100 * best[k][trainer.task.primary]:>6.2f}% ({best[k]['epoch']})"
        print(line)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config, rank = None, None
    say = print
    try:
        if args.distributed:
            rank = join_process_group(args)
            if rank != 0:  # rank 0 speaks for the run; every rank reports its own errors
                say = lambda *parts, **options: None  # noqa: E731
        config, payload = prepare_resume(args, rank) if args.resume else (prepare_new_run(args), None)
        check_names(config)
        if config.dataset in DATASETS and config.dataset != "synthetic" and not config.weights:
            say(
                f"note: training {config.arch} from random initialisation; the papers' numbers assume "
                "ImageNet weights (--weights PATH to a local torchvision or torchreid file)"
            )
        data = load_data(config, log=say)
        trainer = Trainer(config, data, Path(config.output), log=say, rank=rank)
        if payload is not None:
            trainer.load_state(payload)
            say(f"resuming {config.output} after epoch {trainer.epoch}, to epoch {config.epochs}")
        grafted = config.graft and config.models > 1
        mode = "grafted" if grafted else "independent" if config.models > 1 else "baseline"
        if rank is None:
            rates = ", ".join(f"{m.initial_lr:.3g}" for m in trainer.members)
            say(f"{config.models} x {config.arch} ({mode}), initial lr {rates}; run: {config.output}")
        else:
            say(
                f"{config.models} x {config.arch} ({mode}), one per process over torch.distributed; "
                f"run: {config.output}"
            )
        trainer.fit()
    except (ConfigError, DataMissingError, ImageReadError, ValueError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and not is_distributed_failure(error):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        where = "" if rank is None or message.startswith(f"rank {rank}:") else f"rank {rank}: "
        print(f"train: {where}{message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = "no epoch had completed, nothing was saved"
        if config is not None:
            checkpoint = Path(config.output) / ("." if rank is None else f"rank{rank}") / CHECKPOINT_NAME
            under_torchrun = " --distributed under torchrun" if rank is not None else ""
            again = f"--resume {config.output}{under_torchrun}"
            if checkpoint.exists():
                where = f"the last complete epoch is saved in {checkpoint} (continue with {again})"
        print(f"\ntrain: interrupted; {where}", file=sys.stderr)
        return 130
    finally:
        if rank is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    if rank in (None, 0):
        print_table(trainer)
        print(f"metrics: {Path(config.output) / 'metrics.json'}")
    return 0


def is_distributed_failure(error: RuntimeError) -> bool:
    """A peer that died or hangs surfaces as one of these; other RuntimeErrors are bugs to show."""
    import torch.distributed as dist

    from reidgraft.grafting import RingExchangeError

    return isinstance(error, RingExchangeError | dist.DistError)


if __name__ == "__main__":
    sys.exit(main())
