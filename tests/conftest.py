import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

#: The checkout these tests sit in, if they sit in one: the package tests also run from a
#: copy of tests/ against an installed wheel, where README, scripts, tools, examples,
#: benchmarks, docs and csrc are not there.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_REPOSITORY = all(os.path.exists(os.path.join(ROOT, part)) for part in ("setup.py", "csrc", "README.md"))
OUTSIDE_REPOSITORY = ("needs the source repository (README, scripts, tools, examples, benchmarks, docs, csrc); "
                      "these tests run from outside a checkout")


def skip_module_outside_repository():
    """For a test module that reads the repository as it is imported."""
    if not IN_REPOSITORY:
        pytest.skip(OUTSIDE_REPOSITORY, allow_module_level=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "repository: needs files of the source repository, not only the package")
    config.addinivalue_line("markers", "slow: longer statistical or multi-process tests")


def pytest_collection_modifyitems(config, items):
    if IN_REPOSITORY:
        return
    for item in items:
        if item.get_closest_marker("repository") is not None:
            item.add_marker(pytest.mark.skip(reason=OUTSIDE_REPOSITORY))

try:
    from hypothesis import settings
except ImportError:  # the property tests skip without hypothesis
    settings = None
if settings is not None:
    # "thorough" is every run's; "sanitizers" bounds the time of the run under ASan and
    # UBSan (.ci/sanitizers.sh), where each example costs about ten times as much.
    settings.register_profile("thorough", max_examples=1000)
    settings.register_profile("sanitizers", max_examples=150)
    settings.load_profile(os.environ.get("NSPL_HYPOTHESIS_PROFILE", "thorough"))

@pytest.fixture
def op_calls():
    """A TorchDispatchMode that records the op of every call that reaches the dispatcher while
    it is active ("nspl_filler.nspl_many_", "aten.zero_", ...): ``with op_calls: ...``, then
    ``op_calls.ops``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpCalls(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    return OpCalls()


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
