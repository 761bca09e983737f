"""Fixtures of the in-process recipe runs (see recipe_helpers.py)."""

import socket
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def single_process_group():
    """The one-process group the recipe joins (made by the first test, then reused; env vars as a plain
    `python tools/train.py` sets). The variables are removed after each test module, so the tools that
    later tests start in subprocesses do not inherit them."""
    env = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    from video_sparse.data.vtab import make_digits_vtab

    root = tmp_path_factory.mktemp("vtab")
    make_digits_vtab(root, task="cifar", n_train=24, n_test=8, size=32, seed=0)
    return root
