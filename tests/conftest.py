import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

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

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
