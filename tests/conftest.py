import os

import pytest
import torch

os.environ.setdefault("NNMEND_NO_PROGRESS", "1")
# Under pytest-xdist (`make test` runs two workers) the cores are shared among the workers; alone, two threads.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 2) // _WORKERS))
torch.set_num_threads(_THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))      # CLI subprocesses the tests start


@pytest.fixture(scope="session")
def mnist_small():
    from nnmend import load_dataset

    return load_dataset("mnist", "train", limit=2000), load_dataset("mnist", "test", limit=1000)
