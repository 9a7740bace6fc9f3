"""GPU efficiency: images/s and peak memory of ResNet-18 at 224 px training steps in fp32 and in bf16 autocast
with channels-last, and a 3D UNet step, with the device named. Without a GPU it says so and measures nothing.

    python -m benchmarks.gpu [--steps 30]
"""

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn

from benchmarks.common import print_rows, write_results
from research.models import ResNet18, UNet


def measure(net: nn.Module, batch: torch.Tensor, target: torch.Tensor, steps: int, bf16: bool) -> tuple[float, float]:
    """(samples/s, peak GiB) of forward + loss + backward + AdamW step, after 5 warm-up steps."""
    optimizer, loss_fn = torch.optim.AdamW(net.parameters()), nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(net(batch), target)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * len(batch) / (time.perf_counter() - started), torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    options = parser.parse_args()
    if not torch.cuda.is_available():
        print("GPU benchmark: not measured (no GPU on this machine)")
        write_results("gpu", [{"measured": False, "reason": "no GPU on this machine"}])
        return
    device = torch.device("cuda")
    settings: list[tuple[str, Callable[[], nn.Module], tuple[int, ...], int, bool, bool]] = [
        ("ResNet-18 224 px, fp32", lambda: ResNet18(3, 10, small_input=False), (128, 3, 224, 224), 10, False, False),
        ("ResNet-18 224 px, bf16 + channels-last", lambda: ResNet18(3, 10, small_input=False), (128, 3, 224, 224), 10,
         True, True),
        ("3D UNet 96^3, fp32", lambda: UNet(1, 3, spatial_dims=3, channels=[16, 32, 64, 128], strides=[2, 2, 2]),
         (4, 1, 96, 96, 96), 3, False, False),
        ("3D UNet 96^3, bf16", lambda: UNet(1, 3, spatial_dims=3, channels=[16, 32, 64, 128], strides=[2, 2, 2]),
         (4, 1, 96, 96, 96), 3, True, False),
    ]  # fmt: skip
    rows = []
    for name, build, shape, classes, bf16, channels_last in settings:
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        net = build().to(device, memory_format=memory_format)
        batch = torch.randn(shape, device=device).contiguous(memory_format=memory_format)
        target_shape = (shape[0],) if len(shape) == 4 else (shape[0], *shape[2:])
        target = torch.randint(0, classes if len(shape) == 4 else 3, target_shape, device=device)
        rate, peak = measure(net, batch, target, options.steps, bf16)
        rows.append([name, str(shape[0]), f"{rate:.0f}", f"{peak:.2f}"])
    print_rows(f"GPU: {torch.cuda.get_device_name(0)}", ["setting", "batch", "samples/s", "peak GiB"], rows)
    write_results("gpu", [dict(zip(["setting", "batch", "samples_per_s", "peak_gib"], r, strict=True)) for r in rows])


if __name__ == "__main__":
    main()
