import gc

import jax
import jax.numpy as jnp
import pytest
from helpers import PRECISIONS, data_task, whitened_task

import linflow

# float64 by default, so that the tight checks against SciPy and the closed forms can be
# tight; tests that take the `dtype` fixture also run in float32 with x64 switched off.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


# The longest test files (about 90-210 s each on two cores), started first so that the two
# pytest-xdist workers (one file at a time each) finish together.
LONGEST_FIRST = (
    "test_regularisation.py",
    "test_notebooks.py",
    "test_exact_matrix.py",
    "test_exact.py",
    "test_jax_native.py",
    "test_generalization.py",
    "test_sweep.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file and among the others is kept


@pytest.fixture(scope="module", autouse=True)
def _free_compiled_code():
    """Drop JAX's compiled functions after each test module. Each compiled executable holds a
    few memory mappings, and the whole suite compiles enough of them to pass the kernel's
    limit on mappings per process (vm.max_map_count, 65530 by default), where XLA's next
    compilation crashes the process."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Run the test in float32 with x64 off (JAX's default) and in float64 with x64 on.

    Build tasks and weights inside the test (in this dtype): module-scoped fixtures are
    float64 arrays.
    """
    with jax.enable_x64(request.param == "float64"):
        yield jnp.dtype(request.param)


@pytest.fixture(params=list(PRECISIONS))
def precision(request):
    """`(dtype, x64)` over float32 with x64 off, float32 inputs with x64 on, and float64."""
    dtype, x64 = PRECISIONS[request.param]
    with jax.enable_x64(x64):
        yield jnp.dtype(dtype), x64


@pytest.fixture(scope="module")
def task():
    """A non-whitened task from data, m = 3 != d = 4 (test files may define their own)."""
    return data_task(jax.random.key(0), n=10, d=4, m=3)


@pytest.fixture(scope="module")
def weights0(task):
    """Two Gaussian two-layer starts of hidden width 5 on `task`."""
    return linflow.init_weights(jax.random.key(1), task, 5, scale=0.6, batch=(2,))


@pytest.fixture(scope="module")
def problem():
    """A whitened task (m = 2, d = 3, s = 2, 1) and two balanced small starts (each mode is
    learnt): the small problem of the jit/grad/vmap tests."""
    task = whitened_task(jax.random.key(0), m=2, d=3, s=(2.0, 1.0))
    w0 = linflow.init_weights(jax.random.key(1), task, 2, scheme="balanced", scale=0.3, batch=(2,))
    return task, w0
