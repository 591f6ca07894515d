"""Running a test's workers as separate processes of one process group (torch.distributed)."""
import gc
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

    It leaves at one point for every rank: once the objects the worker left in reference
    cycles (FSDP modules, DTensors, their meshes) are collected, while the group still works,
    and once every rank has finished every collective (the barrier). Before, each rank tore
    its gloo connections down whenever it got there, possibly while its peer still exchanged
    the last messages with it, and left the objects that still held the group to interpreter
    exit; worker 0 aborted at that teardown about one run in seven ("terminate called without
    an active exception"). A worker that raised leaves at once, so that the others fail on the
    broken connections rather than wait at the barrier."""
    device = torch.device("cpu") if backend == "gloo" else torch.device("cuda", rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world,
                            **({"device_id": device} if device.type == "cuda" else {}))
    try:
        worker(rank, device, *args)
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


# Workers fork from one server process that has imported these once, instead of each
# importing torch anew (seconds of CPU per process on a small machine); it imports them
# before any thread or process group exists, so a fork from it is safe.
mp.get_context("forkserver").set_forkserver_preload(
    ["torch", "torch.distributed.tensor", "torch.distributed.fsdp", "torch.distributed.tensor.parallel",
     "nspl_filler", "pytest"])


def run_workers(worker, backend, tmp_path, *args, world=WORLD):
    """worker(rank, device, *args) on `world` spawned processes of one process group (gloo on
    the CPU, NCCL on one GPU per rank); the test fails if any worker fails, or if they have
    not all finished within TIMEOUT_S (they are killed then)."""
    context = mp.start_processes(_in_process_group,
                                 args=(worker, world, backend, str(tmp_path / "rendezvous"), args),
                                 nprocs=world, join=False, start_method="forkserver")
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=max(1.0, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {world} workers did not finish within {TIMEOUT_S} s")
