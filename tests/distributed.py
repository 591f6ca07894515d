"""Running a test's workers as separate processes of one process group (torch.distributed)."""
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
# Far above the ~20 s the workers need on a loaded 2-core machine; a hung collective fails
# the test instead of hanging the suite.
TIMEOUT_S = 300


def requires_gpus(count):
    """Skips the calling test unless `count` CUDA devices and NCCL are there."""
    if not torch.cuda.is_available() or torch.cuda.device_count() < count or not dist.is_nccl_available():
        pytest.skip(f"needs {count} CUDA devices and NCCL")


requires_nccl = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < WORLD or not dist.is_nccl_available(),
    reason="needs two CUDA devices and NCCL",
)


def _in_process_group(rank, worker, world, backend, init_file, args):
    """One worker process: joins the group, runs worker(rank, device, *args), leaves the group.

    Every rank waits at a barrier before destroy_process_group: a rank that tears its gloo
    connections down while another still reads from them (the last collective's messages, or
    the store's) makes that other rank's gloo threads fail, and the process abort
    ("terminate called without an active exception"). A worker that raised leaves at once,
    so that the others fail on the broken connections rather than wait at the barrier."""
    device = torch.device("cpu") if backend == "gloo" else torch.device("cuda", rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world,
                            **({"device_id": device} if device.type == "cuda" else {}))
    try:
        worker(rank, device, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_workers(worker, backend, tmp_path, *args, world=WORLD):
    """worker(rank, device, *args) on `world` spawned processes of one process group (gloo on
    the CPU, NCCL on one GPU per rank); the test fails if any worker fails, or if they have
    not all finished within TIMEOUT_S (they are killed then)."""
    context = mp.start_processes(_in_process_group,
                                 args=(worker, world, backend, str(tmp_path / "rendezvous"), args),
                                 nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=max(1.0, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {world} workers did not finish within {TIMEOUT_S} s")
