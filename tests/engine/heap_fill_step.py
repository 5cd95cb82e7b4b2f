"""One bf16 training step of each backbone and input size given, run after freed memory was
filled with 0, with NaN and with 1e30: prints, as JSON, how many of its gradients differ between
the fills. A right kernel never reads memory it did not write, so the count must be 0.

Run in a fresh process (what a stray read finds depends on the heap's history):
    python -m tests.engine.heap_fill_step resnet50:64x32 mobilenetv2_x1_0:128x64
A case `arch:HxW:side` is instead the step the trainer takes side by side (engine/side_by_side.py):
fp32, in a thread of its own on one intra-op thread.
"""

from __future__ import annotations

import json
import sys
import threading

import torch

from reidgraft.models import build_backbone

FILLS = (0.0, float("nan"), 1e30)


def spoil_freed_memory(value: float) -> None:
    """Allocate blocks of many sizes filled with `value` and free them: the allocator hands the
    same memory to the next step's buffers."""
    blocks = [torch.full((2**k // 4,), value) for k in range(8, 26) for _ in range(4)]
    del blocks


def gradients(model, state, images, labels, fill: float, bf16: bool = True) -> list[torch.Tensor]:
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    spoil_freed_memory(fill)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        output = model(images)
        logits = output[0] if isinstance(output, tuple) else output
    torch.nn.functional.cross_entropy(logits.float(), labels).backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def differing(arch: str, height: int, width: int, side: bool = False) -> int:
    """How many gradient tensors of one step differ between the fills (`side`: the side-by-side
    step, fp32 in a thread of one intra-op thread)."""
    classes = 8
    model = build_backbone(arch, classes, seed=0).to(memory_format=torch.channels_last).train()
    state = {name: value.clone() for name, value in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, height, width, generator=generator).contiguous(
        memory_format=torch.channels_last
    )
    labels = torch.arange(4) % classes
    if side:
        found = []

        def in_thread() -> None:
            torch.set_num_threads(1)
            found.extend(gradients(model, state, images, labels, fill, bf16=False) for fill in FILLS)

        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join()
        first, *others = found
    else:
        first, *others = (gradients(model, state, images, labels, fill) for fill in FILLS)
    return sum(
        any(not torch.equal(a, b) for b in (other[i] for other in others)) for i, a in enumerate(first)
    )


def main(cases: list[str]) -> None:
    counts = {}
    for case in cases:
        arch, size, *mode = case.split(":")
        height, width = map(int, size.split("x"))
        counts[case] = differing(arch, height, width, side=mode == ["side"])
    print(json.dumps(counts))


if __name__ == "__main__":
    main(sys.argv[1:])
