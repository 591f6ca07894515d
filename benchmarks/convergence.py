"""Does NSPL train faster? Trains one model from several initialisations, everything else
paired, and records the training loss and accuracy at every step and the test loss and
accuracy along the way.

Pairing: run (init, seed) takes three independent streams from `seed` alone (numpy's
SeedSequence spawns them): the initial weights, the order of the training batches and the
dropout masks. Runs with the same seed and different initialisers therefore see the same
batches in the same order and drop the same units; only the initial weights differ. Each
run uses one intra-op thread, so it is deterministic: the same (init, seed) gives the same
curves bit for bit (the JSON keeps a digest of each run's batch order to show the pairing).

Training: plain SGD with momentum, constant learning rate, cross-entropy, batches drawn
without replacement and reshuffled every epoch; no weight decay, no augmentation, no
schedule, the same for every initialiser. A run whose loss becomes non-finite stops there
(the rest of its curve is NaN) and is counted as diverged; its final test accuracy is what
its weights then predict.

    python benchmarks/convergence.py                     # the default study (digits, 4 models, 5 inits, 5 seeds)
    python benchmarks/convergence.py --dataset mnist --model mlp --inits all --seeds 5 --workers 2
    python benchmarks/convergence.py --dataset digits --model resnet_bn --inits nspl,he_normal \\
        --seeds 0,1,2 --steps 200 --json out.json --plot out.png --markdown out.md

Outputs per (dataset, model): --json, --plot and --markdown are path templates in which
{dataset} and {model} are replaced (default benchmarks/results/convergence_{dataset}_{model}.*);
an empty string skips that output. The summaries and statistical tests are in
convergence_report.py and convergence_stats.py; the combined table of several JSON files
comes from ``python benchmarks/convergence_report.py``.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import math
import multiprocessing
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import common
import convergence_data
import convergence_inits
import convergence_models
import convergence_report

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DEFAULT_TEMPLATE = os.path.join(RESULTS, "convergence_{dataset}_{model}")
# About 22 epochs of digits and 13 of the MNIST subset: enough for the reference to pass the
# thresholds (convergence_report) on every model, few enough for the study to run on 2 cores.
DEFAULT_STEPS = {"digits": 500, "mnist": 800}


@dataclass(frozen=True)
class Settings:
    """How every run of a study trains: `steps` SGD updates on batches of `batch_size`,
    learning rate `lr`, momentum `momentum`; the test set is evaluated every `eval_every`
    steps and after the last."""

    steps: int
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    eval_every: int = 50


def stream_seeds(seed: int) -> tuple[int, int, int]:
    """(init, batch order, dropout) seeds of run seed `seed`: three independent 63-bit seeds
    spawned from numpy's SeedSequence(seed), the same for every initialiser."""
    children = np.random.SeedSequence(seed).spawn(3)
    return tuple(int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children)


class BatchOrder:
    """Batch indices of a training set of `size`: a fresh permutation from `seed`'s own
    generator every epoch, cut into batches of `batch_size` (a short last batch is dropped,
    so every step sees a full batch). `digest` is the SHA-1 of every index handed out."""

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        if batch_size > size:
            raise ValueError(f"batch size {batch_size} is larger than the training set ({size})")
        self.size, self.batch_size = size, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._sha1 = hashlib.sha1()

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            order = torch.randperm(self.size, generator=self.generator)
            for start in range(0, self.size - self.batch_size + 1, self.batch_size):
                batch = order[start:start + self.batch_size]
                self._sha1.update(batch.numpy().tobytes())
                yield batch

    @property
    def digest(self) -> str:
        """SHA-1 (hex) of the indices of every batch handed out so far."""
        return self._sha1.hexdigest()


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` in eval mode on (x, y); the model is put
    back in training mode."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits, y).item()
        accuracy = (logits.argmax(dim=1) == y).double().mean().item()
    model.train()
    return loss, accuracy


def train_run(split: convergence_data.Split, model_name: str, init_name: str, seed: int,
              settings: Settings) -> dict:
    """Trains `model_name` on `split` from initialiser `init_name` with run seed `seed`;
    returns the run's record: per-step training loss and batch accuracy, test loss and
    accuracy at the evaluation steps, the final test accuracy, whether it diverged, the
    digest of its batch order and its wall time in seconds."""
    started = time.perf_counter()
    init_seed, order_seed, dropout_seed = stream_seeds(seed)
    model = convergence_models.build(model_name, split.image_size, split.classes)
    convergence_inits.initialise(model, init_name, init_seed)
    optimiser = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    # Dropout draws from torch's default generator; nothing else does during training.
    torch.manual_seed(dropout_seed)
    order = BatchOrder(split.train_x.shape[0], settings.batch_size, order_seed)

    train_loss = [math.nan] * settings.steps
    train_acc = [math.nan] * settings.steps
    eval_steps, test_loss, test_acc = [], [], []
    diverged = False
    model.train()
    for step, batch in enumerate(order, start=1):
        logits = model(split.train_x[batch])
        loss = F.cross_entropy(logits, split.train_y[batch])
        if not torch.isfinite(loss):
            diverged = True
            break
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        train_loss[step - 1] = loss.item()
        train_acc[step - 1] = (logits.argmax(dim=1) == split.train_y[batch]).double().mean().item()
        if step % settings.eval_every == 0 or step == settings.steps:
            loss_value, accuracy = evaluate(model, split.test_x, split.test_y)
            eval_steps.append(step)
            test_loss.append(loss_value)
            test_acc.append(accuracy)
        if step == settings.steps:
            break
    final_loss, final_acc = evaluate(model, split.test_x, split.test_y)
    return {
        "init": init_name,
        "seed": seed,
        "train_loss": [_rounded(v, 6) for v in train_loss],
        "train_acc": [_rounded(v, 6) for v in train_acc],
        "eval_steps": eval_steps,
        "test_loss": [_rounded(v, 6) for v in test_loss],
        "test_acc": test_acc,
        "final_test_loss": _rounded(final_loss, 6),
        "final_test_acc": final_acc,
        "diverged": diverged,
        "data_order_sha1": order.digest,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _rounded(value: float, digits: int) -> Optional[float]:
    # JSON has no NaN; null marks the steps after a divergence.
    return None if not math.isfinite(value) else float(f"{value:.{digits}g}")


# Each worker process loads a dataset once and trains on one thread, so that two workers on
# two cores do not compete for them.
_SPLITS: dict[str, convergence_data.Split] = {}


def _worker_setup() -> None:
    torch.set_num_threads(1)


def _job(job: tuple[str, str, str, int, Settings]) -> dict:
    dataset, model_name, init_name, seed, settings = job
    if dataset not in _SPLITS:
        _SPLITS[dataset] = convergence_data.load(dataset)
    return train_run(_SPLITS[dataset], model_name, init_name, seed, settings)


def _progress(total: int, description: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit="run", file=sys.stderr, dynamic_ncols=True)


def run_study(dataset: str, model_name: str, inits: Sequence[str], seeds: Sequence[int], settings: Settings,
              thresholds: Optional[convergence_report.Thresholds] = None, workers: int = 1,
              progress: bool = True) -> dict:
    """Every (init, seed) run of one (dataset, model), in `workers` processes of one thread
    each; returns the study's record: settings, thresholds, machine, load before and after,
    wall time, the runs (in the order of `inits`, then `seeds`) and their summary."""
    thresholds = thresholds or convergence_report.Thresholds()
    started_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    machine = common.machine()
    started = time.perf_counter()
    jobs = [(dataset, model_name, init, seed, settings) for init in inits for seed in seeds]
    bar = _progress(len(jobs), f"{dataset}/{model_name}") if progress else None
    runs = []
    if workers <= 1:
        threads = torch.get_num_threads()
        _worker_setup()
        try:
            for job in jobs:
                runs.append(_job(job))
                _advance(bar, runs[-1], progress)
        finally:
            torch.set_num_threads(threads)
    else:
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_setup) as pool:
            for record in pool.imap_unordered(_job, jobs):
                runs.append(record)
                _advance(bar, record, progress)
    if bar is not None:
        bar.close()
    position = {(init, seed): k for k, (_, _, init, seed, _) in enumerate(jobs)}
    runs.sort(key=lambda r: position[(r["init"], r["seed"])])
    result = {
        "dataset": dataset,
        "model": model_name,
        "settings": asdict(settings),
        "inits": list(inits),
        "seeds": list(seeds),
        "reference": convergence_inits.REFERENCE,
        "thresholds": asdict(thresholds),
        "started": started_at,
        "machine": machine,
        "workers": workers,
        "load_average_after": common.load_average(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "runs": runs,
    }
    result["summary"] = convergence_report.summarise(result)
    return result


def _advance(bar, record: dict, progress: bool) -> None:
    if bar is not None:
        bar.set_postfix_str(f"{record['init']} seed {record['seed']}: test acc {record['final_test_acc']:.3f}")
        bar.update()
    elif progress:
        print(f"  {record['init']} seed {record['seed']}: test acc {record['final_test_acc']:.3f} "
              f"({record['seconds']:.1f} s)", file=sys.stderr)


def parse_seeds(text: str) -> list[int]:
    """'5' → seeds 0..4; '0,3,7' → those seeds."""
    if "," in text:
        return [int(s) for s in text.split(",") if s.strip()]
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return list(range(count))


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if text.strip() == "all":
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; choose from {list(known)} or all")
    return names


def parser() -> argparse.ArgumentParser:
    """The command line of the study."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 3)[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help=f"comma-separated, of {convergence_data.DATASETS} or all")
    p.add_argument("--model", default="all", help=f"comma-separated, of {convergence_models.MODELS} or all")
    p.add_argument("--inits", default="default",
                   help="comma-separated names or groups: " + "; ".join(
                       f"{g} = {','.join(v)}" for g, v in convergence_inits.GROUPS.items() if g != "grid")
                   + "; grid = nspl_a<alpha>_r<ratio> for alpha in "
                   f"{convergence_inits.GRID_ALPHAS}, ratio in {convergence_inits.GRID_RATIOS} (1, 100 is 'nspl')")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("5"), help="a count N (seeds 0..N-1) or a list")
    p.add_argument("--steps", type=int, default=None,
                   help=f"SGD steps per run (default per dataset: {DEFAULT_STEPS})")
    p.add_argument("--batch-size", type=int, default=Settings.batch_size)
    p.add_argument("--lr", type=float, default=Settings.lr)
    p.add_argument("--momentum", type=float, default=Settings.momentum)
    p.add_argument("--eval-every", type=int, default=Settings.eval_every)
    p.add_argument("--loss-threshold", type=float, default=convergence_report.LOSS_THRESHOLD,
                   help="steps to reach this training loss (trailing mean) are reported")
    p.add_argument("--acc-threshold", type=float, default=convergence_report.ACC_THRESHOLD,
                   help="steps to reach this training batch accuracy (trailing mean) are reported")
    p.add_argument("--window", type=int, default=convergence_report.WINDOW,
                   help="steps in the trailing mean that the thresholds are applied to")
    p.add_argument("--workers", type=int, default=1,
                   help="processes of one thread each (runs are deterministic whatever the number)")
    p.add_argument("--json", default=DEFAULT_TEMPLATE + ".json", help="path template; '' to skip")
    p.add_argument("--plot", default=DEFAULT_TEMPLATE + ".png", help="path template; '' to skip (needs matplotlib)")
    p.add_argument("--markdown", default=DEFAULT_TEMPLATE + ".md", help="path template; '' to skip")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-run lines")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Runs the study the command line asks for and writes its outputs; returns 0."""
    args = parser().parse_args(argv)
    try:
        datasets = _names(args.dataset, convergence_data.DATASETS, "dataset")
        models = _names(args.model, convergence_models.MODELS, "model")
        inits = convergence_inits.expand(args.inits)
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser().error(str(error))
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser().error("--plot needs matplotlib (pip install 'nspl_filler[bench]'); pass --plot '' to skip it")
    thresholds = convergence_report.Thresholds(args.loss_threshold, args.acc_threshold, args.window)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + (sys.argv[1:] if argv is None else argv))
    for dataset in datasets:
        settings = Settings(args.steps or DEFAULT_STEPS[dataset], args.batch_size, args.lr, args.momentum,
                            args.eval_every)
        for model_name in models:
            result = run_study(dataset, model_name, inits, args.seeds, settings, thresholds, args.workers,
                               progress=not args.no_progress)
            result["command"] = command
            table = convergence_report.markdown(result)
            print(table + "\n")
            paths = {kind: template.format(dataset=dataset, model=model_name)
                     for kind, template in (("json", args.json), ("plot", args.plot), ("markdown", args.markdown))
                     if template}
            if "json" in paths:
                convergence_report.write_json(result, paths["json"])
            if "markdown" in paths:
                _write_text(paths["markdown"], table + "\n")
            if "plot" in paths:
                import convergence_plot

                convergence_plot.plot_study(result, paths["plot"])
    return 0


def _write_text(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
