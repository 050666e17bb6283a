import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import data_task, whitened_task

import linflow


def test_from_data_statistics():
    key = jax.random.key(0)
    X = jax.random.normal(key, (10, 4))
    Y = jax.random.normal(jax.random.key(1), (10, 3))
    mean = linflow.Task.from_data(X, Y)
    total = linflow.Task.from_data(X, Y, normalize="sum")
    assert np.allclose(mean.sigma_xx, X.T @ X / 10)
    assert np.allclose(mean.sigma_yx, Y.T @ X / 10)
    assert np.allclose(total.sigma_yx, Y.T @ X)
    assert np.allclose(total.sigma_yy, Y.T @ Y)
    assert mean.X is not None and mean.Y.shape == (10, 3)
    assert mean.sigma_yx.shape == (3, 4)


def test_identity_when_sigma_xx_omitted():
    task = linflow.Task(jnp.ones((2, 3)))
    assert task.whitened
    assert np.array_equal(task.sigma_xx, np.eye(3))


def test_modes_descending_reconstruct_and_sign_convention():
    task = data_task(jax.random.key(2))
    U, s, V = task.modes()
    assert U.shape == (3, 3) and s.shape == (3,) and V.shape == (4, 3)
    assert np.all(np.diff(s) <= 0)
    assert np.allclose((U * s[None, :]) @ V.T, task.sigma_yx, atol=1e-12)
    pivots = np.take_along_axis(np.asarray(U), np.argmax(np.abs(U), axis=0)[None], axis=0)
    assert np.all(pivots > 0)
    # The convention makes the result independent of how the SVD picked its signs.
    flipped = linflow.Task(-task.sigma_yx)
    U2, s2, V2 = flipped.modes()
    assert np.allclose(U2, U) and np.allclose(V2, -V) and np.allclose(s2, s)


def test_whitened_task_singular_values():
    task = whitened_task(jax.random.key(3))
    assert np.allclose(task.modes()[1], [3.0, 2.0, 1.0])


@pytest.mark.parametrize(
    "X, Y, match",
    [
        (np.ones((5, 2)), np.ones((4, 3)), "X has 5 samples"),
        (np.full((4, 2), np.nan), np.ones((4, 3)), "X=...\\) contains NaN"),
        (np.ones((4, 2)), np.array([[np.inf, 0, 0]] * 4), "Y=...\\) contains NaN or inf"),
        (np.ones(4), np.ones((4, 3)), "X=...\\) must be 2-D"),
    ],
)
def test_from_data_rejects_bad_data(X, Y, match):
    with pytest.raises(ValueError, match=match):
        linflow.Task.from_data(X, Y)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="normalize"):
        linflow.Task.from_data(np.ones((3, 2)), np.ones((3, 2)), normalize="median")
    with pytest.raises(ValueError, match="sigma_xx=...\\) must have shape"):
        linflow.Task(np.ones((2, 3)), np.eye(2))
    with pytest.raises(ValueError, match="symmetric"):
        linflow.Task(np.ones((2, 2)), np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="sigma_yx=...\\) must be 2-D"):
        linflow.Task(np.ones(3))
    with pytest.raises(ValueError, match="unbounded below"):
        linflow.Task(np.array([[1.0, 1.0]]), np.diag([1.0, 0.0]))
