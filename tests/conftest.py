"""Every test leaves the process-group variables as it found them.

An in-process training run sets ``RANK``, ``MASTER_PORT`` and the like (as a plain
``python tools/train.py`` does); tools that later tests start in subprocesses must not inherit them.
"""
import os

import pytest

DIST_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _restore_process_group_variables():
    before = {key: os.environ.get(key) for key in DIST_VARIABLES}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
