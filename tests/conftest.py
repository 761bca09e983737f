"""Every test leaves the process as it found it.

- The process-group variables: an in-process training run sets ``RANK``, ``MASTER_PORT`` and the like
  (as a plain ``python tools/train.py`` does); tools that later tests start in subprocesses must not
  inherit them.
- ``torch.nn.functional.linear``: an in-process DeepSpeed ZeRO-3 engine replaces it process-wide with
  its own autograd function (which saves other tensors for the backward pass); later tests that count
  saved activations must see PyTorch's own.
"""

import os

import pytest
import torch

DIST_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_LINEAR = torch.nn.functional.linear


@pytest.fixture(autouse=True)
def _restore_process_state():
    before = {key: os.environ.get(key) for key in DIST_VARIABLES}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    torch.nn.functional.linear = _LINEAR
