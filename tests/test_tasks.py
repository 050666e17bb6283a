"""Built-in tasks: singular values against hand-computed values, and the task variants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linflow
from linflow import tasks


def test_binary_tree_depth_2_is_the_saxe_hierarchy():
    tree, items, properties = tasks.binary_tree(2)
    saxe = tasks.saxe_hierarchy()[0]
    np.testing.assert_array_equal(tree.sigma_yx, saxe.sigma_yx)
    assert len(items) == 4 and properties[0] == "node 0.0" and properties[-1] == "node 2.3"


@pytest.mark.parametrize(
    "depth, squares",
    [
        # Eigenvalues of Y Yᵀ: 2^(D - l + 1) - 1, 2^(l - 1) times at level l >= 1.
        (1, [3, 1]),
        (3, [15, 7, 3, 3, 1, 1, 1, 1]),
        (4, [31, 15, 7, 7, 3, 3, 3, 3, *[1] * 8]),
    ],
)
def test_binary_tree_singular_values(depth, squares):
    task, items, properties = tasks.binary_tree(depth)
    assert task.sigma_yx.shape == (2 ** (depth + 1) - 1, 2**depth)
    np.testing.assert_allclose(task.modes()[1] ** 2, squares, rtol=1e-12)


def test_binary_tree_noise_flips_entries():
    clean = tasks.binary_tree(5)[0].Y
    noisy = tasks.binary_tree(5, noise=0.1, key=jax.random.key(0))[0].Y
    flipped = np.asarray(clean != noisy)
    assert set(np.unique(np.asarray(noisy))) <= {0.0, 1.0}
    assert 0.07 < flipped.mean() < 0.13  # 32 × 63 entries, flipped with probability 0.1
    with pytest.raises(ValueError, match="binary_tree.*needs key"):
        tasks.binary_tree(2, noise=0.1)
    with pytest.raises(ValueError, match=r"binary_tree\(depth=0\)"):
        tasks.binary_tree(0)


def test_semantic_hierarchy():
    task, items, properties = tasks.semantic_hierarchy()
    assert task.sigma_yx.shape == (15, 8)
    np.testing.assert_allclose(task.modes()[1], np.sqrt([15, 7, 3, 3, 1, 1, 1, 1]), rtol=1e-12)
    canary = task.sigma_yx[:, items.index("Canary")]
    assert [p for p, has in zip(properties, canary) if has] == ["Grow", "Move", "Fly", "Sing"]
    oak = task.sigma_yx[:, items.index("Oak")]
    assert [p for p, has in zip(properties, oak) if has] == ["Grow", "Roots", "Bark", "Acorns"]


def test_random_task_spectrum():
    task = tasks.random_task(jax.random.key(3), [5.0, 2.0, 0.5], 6, 4)
    assert task.sigma_yx.shape == (6, 4) and task.whitened
    np.testing.assert_allclose(task.modes()[1], [5.0, 2.0, 0.5, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="random_task.*singular_values"):
        tasks.random_task(jax.random.key(0), [1.0, 1.0, 1.0], 2, 5)
    with pytest.raises(ValueError, match="random_task.*singular_values"):
        tasks.random_task(jax.random.key(0), [-1.0], 2, 5)


def test_reversal_by_hand():
    task, items, properties = tasks.saxe_hierarchy()
    canary, fly = items.index("Canary"), properties.index("Fly")
    flipped = tasks.reversal(task, canary, fly)
    expected = np.asarray(task.sigma_yx).copy()
    expected[fly, canary] = 0.0
    np.testing.assert_array_equal(flipped.sigma_yx, expected)
    # Y Yᵀ after the flip, by hand (inner products of the items' property rows):
    gram = np.array([[2, 2, 1, 1], [2, 3, 1, 1], [1, 1, 3, 2], [1, 1, 2, 3]], float)
    s = np.asarray(flipped.modes()[1])
    np.testing.assert_allclose(np.sort(s**2), np.sort(np.linalg.eigvalsh(gram)), rtol=1e-12)
    assert np.isclose(np.sum(s**2), 11.0)  # eleven of the twelve 1s remain
    assert np.any(np.isclose(s, 1.0))  # oak vs rose is untouched: (0, 0, 1, -1), eigenvalue 1
    twice = tasks.reversal(flipped, canary, fly)
    np.testing.assert_array_equal(twice.sigma_yx, task.sigma_yx)
    with pytest.raises(ValueError, match="reversal.*item=4"):
        tasks.reversal(task, 4, 0)
    with pytest.raises(ValueError, match="reversal.*needs a task with data"):
        tasks.reversal(linflow.Task(jnp.eye(2)), 0, 0)


def test_transfer_new_items():
    task, items, properties = tasks.saxe_hierarchy()
    sparrow = task.Y[items.index("Canary")][None, :]  # grows, moves, flies
    extended = tasks.transfer(task, sparrow)
    assert extended.sigma_yx.shape == (7, 5)
    # The sparrow is a copy of the canary: the canary-sparrow difference is a null direction
    # and Σ s² counts the 1s of Y: 12 + 3.
    s = np.asarray(extended.modes()[1])
    assert np.isclose(np.sum(s**2), 15.0)
    np.testing.assert_array_equal(extended.sigma_yx[:, :4], task.sigma_yx)
    alone = tasks.transfer(task, sparrow, keep_old=False)
    assert alone.sigma_yx.shape == (7, 5)
    np.testing.assert_allclose(alone.modes()[1], [3**0.5, 0, 0, 0, 0], atol=1e-12)
    with pytest.raises(ValueError, match="transfer.*targets"):
        tasks.transfer(task, jnp.ones((1, 6)))
