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

requires_nccl = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < WORLD or not dist.is_nccl_available(),
    reason="needs two CUDA devices and NCCL",
)


def run_workers(worker, backend, tmp_path):
    """worker(rank, backend, rendezvous_file) on WORLD spawned processes; the test fails if any
    worker fails, or if they have not all finished within TIMEOUT_S (they are killed then)."""
    context = mp.start_processes(worker, args=(backend, str(tmp_path / "rendezvous")), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=max(1.0, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD} workers did not finish within {TIMEOUT_S} s")
