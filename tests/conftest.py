import os

import pytest
import torch

os.environ.setdefault("NNMEND_NO_PROGRESS", "1")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def mnist_small():
    from nnmend import load_dataset

    return load_dataset("mnist", "train", limit=2000), load_dataset("mnist", "test", limit=1000)
