"""Training speed: images per second of reidgraft's trainer (K = 1, and K models in lockstep)
against a plain PyTorch loop for one model, with the same precision and memory format, measured
in the same run; or, with --sweep, the plain loop in fp32 against channels_last, bf16 autocast
and both.

    python tools/bench_train.py --device cpu --arch mobilenetv2_x1_0 --height 128 --width 64 --amp none
    python tools/bench_train.py --device cuda --arch resnet50 --height 256 --width 128 --amp bf16 \
        --channels-last
    python tools/bench_train.py --sweep --arch resnet50 --height 256 --width 128
    python tools/bench_train.py --population dml papa ema --models 2 --steps 20 --rounds 5

Every side trains on the same random images and labels, held in memory on the device (so the
numbers are the training step's, not JPEG decoding's): forward, label-smoothed cross-entropy,
backward and an AMSGrad step, batch 32 per model unless --batch-size says otherwise.
Goal: on a GPU, K = 4 in lockstep at least 0.9x the plain loop's images/s in total.
With --population, the K-model step of each population method (dml, papa, papa_all, ema: the
EMA of every model) against independent models (none), alternating; goal on this CPU for
K = 2: DML and PAPA add at most 10%.
With --techniques, ways of making the K-model CPU step faster against today's (K models one
after another, every op on all threads, fp32 eager), alternating: torch.compile of each model
(inductor; its first step, the compile, is printed apart), bf16 autocast, the K models fused into
one vmapped model (torch.func), and a thread per model with one intra-op thread each; with the
GFLOP/s each reaches and its share of the CPU's peak (`peak_gflops`).
With --real-epoch, whole epochs of a real dataset through the real loader (the synthetic set by
default; --dataset/--root for others), the default path (K models side by side on the CPU where
it pays, decoded images kept between epochs) against today's (one after another, every image
decoded at every read), alternating, after one whole warm-up epoch of each (printed apart: the
default path's first epoch fills its cache), in the recipes' default precision; its last line is
`speedup: X.XXx` (default over eager):

    python tools/bench_train.py --real-epoch --models 2 --rounds 3 --root /tmp/synthetic
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from reidgraft.config import build_config
from reidgraft.data import ReidSplits
from reidgraft.device import autocast, resolve_device
from reidgraft.engine import Trainer
from reidgraft.models import build_backbone

CLASSES = 64
DISTINCT_BATCHES = 4  # cycled through: enough that no cache holds one batch's answers


def peak_gflops() -> dict[str, tuple[float, str]]:
    """This CPU's peak GFLOP/s in fp32 and bf16, from /proc/cpuinfo (cores, clock, flags), and
    what it assumes: fp32, two FMA units per core (AVX-512: 16 lanes, else AVX2: 8; 2 flops
    each); bf16, AMX's tile unit where the machine exposes it (1024 multiply-adds per cycle), else
    AVX512-BF16's dot products (twice fp32's rate), else fp32's. The clock is the one read now."""
    import os

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(
        next((line.split(":")[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    )
    clocks = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    ghz, cores = (clocks[0] / 1000 if clocks else 2.0), os.cpu_count() or 1
    lanes = 16 if "avx512f" in flags else 8
    fp32 = cores * ghz * 2 * lanes * 2
    if "amx_bf16" in flags:
        bf16 = (cores * ghz * 1024 * 2, "AMX")
    elif "avx512_bf16" in flags:
        bf16 = (2 * fp32, "AVX512-BF16")
    else:
        bf16 = (fp32, "no bf16 instructions")
    where = f"{cores} cores at {ghz:.2f} GHz"
    return {"fp32": (fp32, f"fp32 FMA, {where}"), "bf16": (bf16[0], f"bf16 {bf16[1]}, {where}")}


class MemoryBatches:
    """`steps` batches of random images and labels, already on the device, in the shape of a
    reidgraft training loader (the trainer sets `.sampler.epoch`)."""

    def __init__(self, steps: int, batch: int, height: int, width: int, device: torch.device, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.steps, self.sampler = steps, SimpleNamespace(epoch=0)
        self.batches = []
        for _ in range(min(steps, DISTINCT_BATCHES)):
            images = torch.randn(batch, 3, height, width, generator=generator)
            labels = torch.randint(CLASSES, (batch,), generator=generator)
            self.batches.append((images.to(device), labels.to(device), None, None))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return (self.batches[i % len(self.batches)] for i in range(self.steps))


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(args, amp: str, channels_last: bool, steps: int) -> float:
    """One model, the textbook loop (no host sync per step either): images per second."""
    device = resolve_device(args.device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = build_backbone(args.arch, CLASSES, seed=0).to(device, memory_format=layout).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=5e-4, amsgrad=True)
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    data = MemoryBatches(steps + 1, args.batch_size, args.height, args.width, device, seed=0)
    total = torch.zeros((), device=device)
    for step, (images, labels, _, _) in enumerate(data):
        if step == 1:  # the first step (allocations, kernel choice) is not timed
            synchronise(device)
            start = time.perf_counter()
        images = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        with autocast(device, amp):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        total += loss.detach()
    synchronise(device)
    return steps * args.batch_size / (time.perf_counter() - start)


POPULATION_SETTINGS = {
    "none": {"population": "none"},
    "graft": {"population": "graft"},  # (its work is at the epoch end, which this does not time)
    "dml": {"population": "dml"},
    "papa": {"population": "papa"},
    "papa_all": {"population": "papa", "papa_mode": "all"},
    "ema": {"population": "none", "ema": 0.999},
}


def trainer_run(args, models: int, amp: str, channels_last: bool, steps: int, **settings) -> float:
    """K models through reidgraft's trainer on in-memory batches: total images per second."""
    device = resolve_device(args.device)
    items = [(f"unused{i}.jpg", i % CLASSES, i % 2) for i in range(max(args.batch_size, CLASSES))]
    splits = ReidSplits("memory", items, items[:2], items[:2])
    config = build_config(
        dataset="synthetic", arch=args.arch, models=models, height=args.height, width=args.width,
        batch_size=args.batch_size, optimizer="amsgrad", lr=3e-4, device=args.device, amp=amp,
        channels_last=channels_last, weights=None, parallel_models="none", **settings,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, splits, Path(run_dir), log=lambda line: None)
        trainer.train_loaders = [
            MemoryBatches(steps, args.batch_size, args.height, args.width, device, seed=k)
            for k in range(len(trainer.train_loaders))  # (one for DML's shared batch)
        ]
        trainer.train_epoch(0, max_steps=1)  # warm-up
        synchronise(device)
        start = time.perf_counter()
        trainer.train_epoch(1, max_steps=steps)  # reads loss and accuracy once, at its end
        return models * steps * args.batch_size / (time.perf_counter() - start)


def compare_trainer(args) -> None:
    rounds = {"plain": [], "one": [], "many": []}
    for _ in range(args.rounds):  # alternate, so drifts in machine speed hit every side alike
        rounds["plain"].append(plain_loop(args, args.amp, args.channels_last, args.steps))
        rounds["one"].append(trainer_run(args, 1, args.amp, args.channels_last, args.steps))
        rounds["many"].append(trainer_run(args, args.models, args.amp, args.channels_last, args.steps))
    plain, one, many = (statistics.median(rounds[key]) for key in ("plain", "one", "many"))
    spread = {key: f"{min(v):.1f}-{max(v):.1f}" for key, v in rounds.items()}
    print(f"{'one model, plain PyTorch loop':<36}{plain:>9.1f} images/s   (rounds {spread['plain']})")
    print(f"{'one model, reidgraft trainer':<36}{one:>9.1f} images/s   {one / plain:.3f} x plain")
    label = f"{args.models} models in lockstep, reidgraft"
    print(f"{label:<36}{many:>9.1f} images/s   {many / plain:.3f} x plain (goal >= 0.9 on a GPU)")


def compare_populations(args) -> None:
    """Each population method's K-model step against independent models, alternating rounds."""
    names = ["none", *[name for name in args.population if name != "none"]]
    rounds = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            speed = trainer_run(
                args, args.models, args.amp, args.channels_last, args.steps, **POPULATION_SETTINGS[name]
            )
            rounds[name].append(speed)
    base = statistics.median(rounds["none"])
    model = build_backbone(args.arch, CLASSES, seed=0)
    copy_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
    print(f"an EMA copy holds one model's state: {copy_mb:.1f} MiB for {args.arch} ({CLASSES} classes)")
    for name, values in rounds.items():
        speed = statistics.median(values)
        extra = "" if name == "none" else f"   step time {base / speed - 1:+.1%} against none"
        label = f"{args.models} models, population {name}"
        print(f"{label:<36}{speed:>9.1f} images/s   (rounds {min(values):.1f}-{max(values):.1f}){extra}")


def sweep(args) -> None:
    settings = [("none", False), ("none", True), ("bf16", False), ("bf16", True)]
    rounds = {setting: [] for setting in settings}
    for _ in range(args.rounds):
        for amp, channels_last in settings:
            rounds[(amp, channels_last)].append(plain_loop(args, amp, channels_last, args.steps))
    base = statistics.median(rounds[("none", False)])
    for (amp, channels_last), values in rounds.items():
        speed = statistics.median(values)
        name = ("fp32" if amp == "none" else amp) + (" + channels_last" if channels_last else "")
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(f"{name:<24}{speed:>9.1f} images/s   {speed / base:.2f} x fp32   (rounds {spread})")


def step_flops(args) -> float:
    """One training step's floating-point operations per image: the forward's (torch's count)
    times three (the backward computes about twice the forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_backbone(args.arch, CLASSES, seed=0).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, args.height, args.width))
    return 3.0 * counter.get_total_flops()


def technique_steps(args, name: str):
    """A function training K models on step i's in-memory batches, the way `name` does."""
    import copy
    import threading

    from torch.func import functional_call, stack_module_state, vmap

    layout = torch.channels_last
    data = MemoryBatches(DISTINCT_BATCHES, args.batch_size, args.height, args.width, torch.device("cpu"), 0)
    batches = [(images.contiguous(memory_format=layout), labels) for images, labels, _, _ in data]
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    models = [
        build_backbone(args.arch, CLASSES, seed=k).to(memory_format=layout).train()
        for k in range(args.models)
    ]
    optimizers = [torch.optim.Adam(m.parameters(), lr=3e-4, weight_decay=5e-4, amsgrad=True) for m in models]

    def one(k: int, forward, i: int, amp: str = "none") -> None:
        images, labels = batches[(i + k) % len(batches)]
        with autocast(torch.device("cpu"), amp):
            loss = criterion(forward(images), labels)
        optimizers[k].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[k].step()

    if name in ("eager", "bf16"):
        amp = "bf16" if name == "bf16" else "none"
        return lambda i: [one(k, model, i, amp) for k, model in enumerate(models)]
    if name == "compile":
        compiled = [torch.compile(model) for model in models]
        return lambda i: [one(k, forward, i) for k, forward in enumerate(compiled)]
    if name == "thread_per_model":

        def step(i: int) -> None:
            def work(k: int) -> None:
                torch.set_num_threads(1)  # (this thread's pool only)
                one(k, models[k], i)

            threads = [threading.Thread(target=work, args=(k,)) for k in range(len(models))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        return step
    # fused: the K models as one vmapped model over stacked weights, one optimizer for all
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")
    optimizer = torch.optim.Adam(list(params.values()), lr=3e-4, weight_decay=5e-4, amsgrad=True)

    def forward(p, b, images):
        return functional_call(skeleton, (p, b), (images,))

    def fused(i: int) -> None:
        chosen = [batches[(i + k) % len(batches)] for k in range(len(models))]
        logits = vmap(forward, randomness="different")(params, buffers, torch.stack([x for x, _ in chosen]))
        loss = sum(criterion(logits[k], labels) for k, (_, labels) in enumerate(chosen))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return fused


TECHNIQUES = ("eager", "compile", "bf16", "fused", "thread_per_model")


def compare_techniques(args) -> None:
    """Each technique's K-model step against today's (eager), alternating rounds."""
    names = ["eager", *[name for name in args.techniques if name != "eager"]]
    steps = {}
    for name in names:
        step = technique_steps(args, name)
        started = time.perf_counter()
        step(0)  # (allocations, kernel choice; for compile, the compile)
        first = time.perf_counter() - started
        step(1)
        steps[name] = step
        print(f"{name}: first step {first:.1f} s")
    rounds = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            started = time.perf_counter()
            for i in range(args.steps):
                steps[name](i)
            rounds[name].append(args.models * args.steps * args.batch_size / (time.perf_counter() - started))
    flops, peaks = step_flops(args), peak_gflops()
    base = statistics.median(rounds["eager"])
    for name, values in rounds.items():
        speed = statistics.median(values)
        achieved = speed * flops / 1e9
        peak, assumed = peaks["bf16" if name == "bf16" else "fp32"]
        print(
            f"{name:<18}{speed:>9.1f} images/s   {speed / base:.2f} x eager   {achieved:6.1f} GFLOP/s, "
            f"{achieved / peak:.1%} of {peak:.0f} ({assumed})   (rounds {min(values):.1f}-{max(values):.1f})"
        )


def real_epoch(args) -> None:
    """Whole epochs of a real dataset through the real loader (workers 0, the default): the
    default path (`--parallel-models auto --image-cache auto`: side by side where it pays, decoded
    images kept) against today's (`none` for both: one model after another on every thread, every
    image decoded at each read), alternating rounds, in the recipes' default
    precision (`--amp auto` unless given)."""
    from reidgraft.engine.runs import load_data

    def config(setting: str):
        return build_config(
            dataset=args.dataset, root=args.root, arch=args.arch, models=args.models, height=args.height,
            width=args.width, batch_size=args.batch_size, device="cpu", amp=args.amp or "auto",
            weights="none", parallel_models=setting, image_cache=setting,
        )  # fmt: skip

    data = load_data(config("auto"), log=print)
    paths = {"default": "auto", "eager": "none"}
    with tempfile.TemporaryDirectory() as folder:
        trainers = {
            name: Trainer(config(setting), data, Path(folder) / name, log=lambda line: None)
            for name, setting in paths.items()
        }
        steps = min(len(trainers["default"].train_loaders[0]), args.max_steps or 10**9)
        images = steps * args.batch_size * args.models
        first = trainers["default"]
        images_kept = first.task.images
        print(
            f"{args.dataset}: {steps} steps of {args.batch_size} images x {args.models} models an epoch; "
            f"amp {first.amp}, channels_last {first.channels_last}; "
            f"default path: {first.side_by_side.reason}, {first.side_by_side.at_once} at once, "
            f"{first.side_by_side.threads_each} threads each; decoded images "
            f"{'kept' if images_kept.cache else 'not kept'} ({images_kept.reason})"
        )
        # Epoch 0, whole: warm-up (allocations, kernel choice) and the default path's image cache
        # filled, as a run's first epoch fills it; printed apart, not in the rounds.
        for name, trainer in trainers.items():
            started = time.perf_counter()
            trainer.train_epoch(0, max_steps=steps)
            print(f"  epoch 0 (warm-up), {name}: {images / (time.perf_counter() - started):.1f} images/s")
        rounds = {name: [] for name in paths}
        for epoch in range(1, args.rounds + 1):
            for name, trainer in trainers.items():
                started = time.perf_counter()
                trainer.train_epoch(epoch, max_steps=steps)
                rounds[name].append(images / (time.perf_counter() - started))
                print(f"  round {epoch}, {name}: {rounds[name][-1]:.1f} images/s", flush=True)
    flops, peaks = step_flops(args), peak_gflops()
    peak, assumed = peaks["bf16" if first.amp == "bf16" else "fp32"]
    for name, values in rounds.items():
        speed = statistics.median(values)
        achieved = speed * flops / 1e9
        print(
            f"{name + ' (' + paths[name] + ')':<16}{speed:>9.1f} images/s   {achieved:6.1f} GFLOP/s, "
            f"{achieved / peak:.1%} of {peak:.0f} ({assumed})   (rounds {min(values):.1f}-{max(values):.1f})"
        )
    speedup = statistics.median(rounds["default"]) / statistics.median(rounds["eager"])
    print(f"speedup: {speedup:.2f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--arch", default="mobilenetv2_x1_0")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument(
        "--amp", choices=("auto", "none", "bf16", "fp16"), help="default: none; with --real-epoch, auto"
    )
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model per step (default: 32)")
    parser.add_argument("--models", type=int, default=4, help="K for the lockstep run (default: 4)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (default: 10)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; medians reported (default: 3)"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="fp32, channels_last, bf16, both: the plain loop"
    )
    parser.add_argument(
        "--population",
        nargs="+",
        choices=list(POPULATION_SETTINGS),
        help="time these population methods' K-model step against independent models (none)",
    )
    parser.add_argument(
        "--techniques",
        nargs="+",
        choices=TECHNIQUES,
        help="time these ways of making the K-model CPU step faster against today's (eager)",
    )
    parser.add_argument(
        "--real-epoch",
        action="store_true",
        help="time whole epochs through the real loader: the default path against today's (eager)",
    )
    parser.add_argument("--dataset", default="synthetic", help="with --real-epoch (default: synthetic)")
    parser.add_argument("--root", default="data", help="with --real-epoch: the dataset's folder")
    parser.add_argument(
        "--max-steps", type=int, help="with --real-epoch: stop each epoch after this many steps"
    )
    args = parser.parse_args(argv)
    if args.real_epoch:
        if args.device != "cpu" or args.models < 1 or args.rounds < 1 or (args.max_steps or 1) < 1:
            parser.error("--real-epoch measures the CPU: --device cpu, and counts of at least 1")
        real_epoch(args)
        return 0
    args.amp = args.amp or "none"
    if args.amp == "auto":
        parser.error("--amp auto is for --real-epoch")
    if min(args.models, args.steps, args.rounds, args.batch_size) < 1:
        parser.error("--models, --steps, --rounds and --batch-size must be at least 1")
    device = resolve_device(args.device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{args.arch} at {args.height}x{args.width}, batch {args.batch_size}, {where}, {args.steps} steps, "
        f"median of {args.rounds} alternating rounds"
        + ("" if args.sweep else f", amp {args.amp}{', channels_last' if args.channels_last else ''}")
    )
    if args.sweep:
        sweep(args)
    elif args.techniques:
        if args.device != "cpu":
            parser.error("--techniques measures the CPU step: give --device cpu")
        compare_techniques(args)
    elif args.population:
        if args.models < 2:
            parser.error("--population compares K-model methods: give --models 2 or more")
        compare_populations(args)
    else:
        compare_trainer(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
