import jax
import pytest
from helpers import data_task

import linflow

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="module")
def task():
    """A non-whitened task from data, m = 3 != d = 4 (test files may define their own)."""
    return data_task(jax.random.key(0), n=10, d=4, m=3)


@pytest.fixture(scope="module")
def weights0(task):
    """Two Gaussian two-layer starts of hidden width 5 on `task`."""
    return linflow.init_weights(jax.random.key(1), task, 5, scale=0.6, batch=(2,))
