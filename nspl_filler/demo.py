"""The main job: ``python -m nspl_filler demo``.

Initialises a small ResNet-style CNN with init_module_ (NSPL, fan_in, ReLU gain, seed 0), prints per
layer the target and measured standard deviation and the |w| range, checks that the same
seed reproduces the model bit for bit, and times fill_ against torch's own samplers on
one tensor. Everything runs on the embedded defaults; options change the device, size
and seed.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import nn

from .generator import Generator
from .init import DEFAULT_ALPHA, DEFAULT_RATIO, compute_fans, fill_
from .module import init_module_


def small_resnet(num_classes: int = 10) -> nn.Module:
    """A CIFAR-sized residual-style CNN: the kind of network the NSPL paper initialised."""

    def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        )

    return nn.Sequential(
        nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        block(32, 64, 2), block(64, 128, 2), block(128, 256, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, num_classes),
    )


def initialise(model: nn.Module, seed: int) -> list[tuple[str, nn.Parameter]]:
    """init_module_: NSPL for every layer weight (the convolutions and the linear head), in
    one bulk call from one stream (seed); the norm layers keep the 1 / 0 their constructors
    gave them; returns the NSPL-filled weights."""
    init_module_(model, seed=seed)
    return [(name, p) for name, p in model.named_parameters() if p.dim() >= 2]


def median_seconds(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


DESCRIPTION = __doc__.split("\n\n")[0]
#: Columns of the timed tensor: fill_ takes its fans from a 2-D view of it.
TIMED_COLUMNS = 1024


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _timed_numel(text: str) -> int:
    value = positive_int(text)
    if value % TIMED_COLUMNS:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of {TIMED_COLUMNS}, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, on `parser`."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--numel", type=_timed_numel, default=1 << 24,
                        help=f"elements of the timed tensor, a multiple of {TIMED_COLUMNS}")
    parser.add_argument("--repeat", type=positive_int, default=7, help="timed runs per sampler (median)")


def main(argv: list[str] | None = None) -> int:
    """The demo with its own parser: ``argv`` (default ``sys.argv[1:]``) holds its options."""
    parser = argparse.ArgumentParser(prog="python -m nspl_filler demo", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """The demo for parsed options; 0 when the same seed reproduced the model. ValueError for
    a device that this torch cannot use or a seed out of range, before anything is printed."""
    try:
        device = torch.device(args.device)
        if device.type == "meta":
            raise RuntimeError("the meta device holds no values to show")
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:  # torch's "not compiled with CUDA" is an assertion
        message = (str(error).splitlines() or [""])[0]
        raise ValueError(f"nspl_filler: device {args.device!r} cannot be used here: {message}") from None
    Generator(args.seed)  # refuses a seed outside [-2**63, 2**64)

    print(f"NSPL defaults: alpha = {DEFAULT_ALPHA}, ratio = {DEFAULT_RATIO}, mode = fan_in, gain = sqrt(2)")
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads\n")
    model = small_resnet().to(device)
    weights = initialise(model, args.seed)
    print(f"{'layer':<14}{'shape':<22}{'fan_in':>8}{'target std':>12}{'std':>10}{'min|w|':>10}{'max|w|':>10}")
    worst = 0.0
    for name, p in weights:
        fan_in, _ = compute_fans(p)
        target = math.sqrt(2.0 / fan_in)
        std = p.double().pow(2).mean().sqrt().item()
        worst = max(worst, abs(std / target - 1))
        a = p.abs()
        print(f"{name:<14}{str(tuple(p.shape)):<22}{fan_in:>8}{target:>12.5f}{std:>10.5f}"
              f"{a.min().item():>10.2e}{a.max().item():>10.2e}")
    # The variance is exact in expectation; a layer of n weights deviates by sampling noise
    # of relative size about sqrt((kurtosis - 1) / n) / 2 (a few % for the 864 of layer 0).
    print(f"\nlargest relative deviation of a layer's std from sqrt(2 / fan_in): {worst:.2%}")

    again = small_resnet().to(device)
    same = all(torch.equal(a, b) for (_, a), (_, b) in zip(weights, initialise(again, args.seed)))
    print(f"same seed reproduces every weight bit for bit: {same}")

    t = torch.empty(args.numel, device=device)
    w = t.view(-1, TIMED_COLUMNS)
    candidates = {
        "nspl_filler.fill_": lambda: fill_(w, seed=1),
        "Tensor.uniform_": lambda: t.uniform_(),
        "Tensor.normal_": lambda: t.normal_(),
        "nn.init.kaiming_uniform_": lambda: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        "Tensor.fill_(1.0)": lambda: t.fill_(1.0),
    }
    print(f"\nthroughput on {args.numel} float32 elements ({device}), median of {args.repeat}:")
    rates = {}
    for label, fn in candidates.items():
        rates[label] = args.numel / median_seconds(fn, args.repeat) / 1e6
    for label, rate in rates.items():
        print(f"  {label:<26}{rate:>10.0f} M samples/s   {rate / rates['Tensor.uniform_']:>5.2f}x uniform_")
    return 0 if same else 1
