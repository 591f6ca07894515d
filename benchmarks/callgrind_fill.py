"""A fixed set of fills for counting the CPU kernels' instructions with callgrind, which,
unlike a timer, does not depend on what else the machine runs:

    valgrind --tool=callgrind --toggle-collect='*fill_run_vector*' \\
        --toggle-collect='*fill_run_scalar*' python benchmarks/callgrind_fill.py
    callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep fill_run_vector

One thread, one fill of 2^20 elements per configuration; each configuration is its own
kernel instantiation, so callgrind_annotate reports each apart.
"""
import torch

import nspl_filler

torch.set_num_threads(1)
for dtype, alpha in [(torch.float32, 1.0), (torch.float32, 2.0), (torch.float32, 0.5), (torch.float64, 2.0)]:
    nspl_filler.symmetric_power_law_(torch.empty(1 << 20, dtype=dtype), alpha, 1e-3, 1e-1, seed=7)
