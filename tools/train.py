"""Train K models side by side (re-ID or classification) and graft them at every epoch end.

    python tools/train.py                                   # synthetic quick recipe, 4 models
    python tools/train.py --dataset market1501 --models 4   # the paper's Market-1501 ResNet50 recipe
    python tools/train.py --config configs/duke_mobilenetv2.yaml --no-graft
    python tools/train.py --dataset cifar100 --arch mobilenetv2 --models 4   # the papers' CIFAR recipe
    python tools/train.py --dataset digits                  # classification, nothing to download
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
RESUMABLE = {"epochs", "workers", "device", "eval_every", "eval_batch_size", "deterministic", "download"}
IDENTITY = ("dataset", "arch", "models")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="a YAML recipe (default: chosen from --dataset and --arch)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run (optionally to --epochs N)")
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
    if (Path(config.output) / CHECKPOINT_NAME).exists():
        raise ConfigError(
            f"{config.output} already holds a run; continue it with --resume {config.output} "
            "or choose another --output"
        )
    return config


def prepare_resume(args: argparse.Namespace) -> tuple[TrainConfig, dict]:
    payload = load_checkpoint(Path(args.resume))
    saved = payload["config"]
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
    config = None
    try:
        config, payload = prepare_resume(args) if args.resume else (prepare_new_run(args), None)
        check_names(config)
        if config.dataset in DATASETS and config.dataset != "synthetic" and not config.weights:
            print(
                f"note: training {config.arch} from random initialisation; the papers' numbers assume "
                "ImageNet weights (--weights PATH to a local torchvision or torchreid file)"
            )
        data = load_data(config)
        trainer = Trainer(config, data, Path(config.output))
        if payload is not None:
            trainer.load_state(payload)
            print(f"resuming {config.output} after epoch {trainer.epoch}, to epoch {config.epochs}")
        mode = "grafted" if trainer.ring else "independent" if config.models > 1 else "baseline"
        rates = ", ".join(f"{m.initial_lr:.3g}" for m in trainer.members)
        print(f"{config.models} x {config.arch} ({mode}), initial lr {rates}; run: {config.output}")
        trainer.fit()
    except (ConfigError, DataMissingError, ImageReadError, ValueError) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        saved = config is not None and (Path(config.output) / CHECKPOINT_NAME).exists()
        where = (
            f"the last complete epoch is saved in {config.output}/{CHECKPOINT_NAME} "
            f"(continue with --resume {config.output})"
            if saved
            else "no epoch had completed, nothing was saved"
        )
        print(f"\ntrain: interrupted; {where}", file=sys.stderr)
        return 130
    print_table(trainer)
    print(f"metrics: {Path(config.output) / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
