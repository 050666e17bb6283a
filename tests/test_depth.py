"""End-to-end flow (Arora et al. 2018), singular-value dynamics (Arora et al. 2019, Thm 3),
and matrix-completion helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import linflow

TOL = {"rtol": 1e-11, "atol": 1e-13}


H = 1e-4  # finite-difference step
CENTRES = jnp.array([0.3, 1.0, 2.5])
# compare points 0, 6 and finite-difference triplets around CENTRES, in one solve
TS = jnp.concatenate(
    [jnp.zeros(1), (CENTRES[:, None] + jnp.array([-H, 0.0, H])[None, :]).ravel(), jnp.full(1, 6.0)]
)


@pytest.fixture(scope="module")
def weights0(task):
    return linflow.init_weights(
        jax.random.key(1), task, (5, 4), scheme="balanced", scale=0.6, batch=(2,)
    )


@pytest.fixture(scope="module")
def end_to_end(task, weights0):
    return linflow.end_to_end_flow(task, linflow.product(weights0), TS, depth=3, tau=1.5, **TOL)


def test_end_to_end_equals_balanced_layerwise_flow(task, weights0, end_to_end):
    layerwise = linflow.gradient_flow(task, weights0, TS, tau=1.5, **TOL).product()
    assert end_to_end.depth == 1 and end_to_end.weights[0].shape == layerwise.shape
    assert float(jnp.max(jnp.abs(layerwise[-1] - layerwise[0]))) > 0.1  # the flow goes somewhere
    np.testing.assert_allclose(end_to_end.product(), layerwise, rtol=0, atol=1e-8)


def test_singular_value_dynamics_match_finite_differences(task, end_to_end):
    """Thm 3 of Arora et al. 2019 against dσ_r/dt of the simulated end-to-end flow."""
    w = end_to_end.product()[1:-1].reshape(3, 3, 2, 3, 4)  # (centre, -h/0/+h, batch, m, d)
    sigma = jnp.linalg.svd(w, compute_uv=False)
    fd = (sigma[:, 2] - sigma[:, 0]) / (2 * H)
    mid = w[:, 1]
    grad = mid @ task.sigma_xx - task.sigma_yx[None, None]
    rates = linflow.singular_value_velocity(mid, grad, 3, tau=1.5)
    assert rates.shape == (3, 2, 3) and float(jnp.min(jnp.abs(fd))) > 1e-3
    np.testing.assert_allclose(rates, fd, rtol=1e-5, atol=1e-7)
    # the source's typo, sigma^(1 - 1/N) in place of sigma^(2 - 2/N), does not fit
    typo = rates * sigma[:, 1] ** ((1 - 1 / 3) - (2 - 2 / 3))
    assert not np.allclose(typo, fd, rtol=1e-2)


def test_preconditioned_gradient_explicit_forms():
    kw, kg = jax.random.split(jax.random.key(2))
    w = jax.random.normal(kw, (2, 3, 5))
    g = jax.random.normal(kg, (2, 3, 5))
    np.testing.assert_allclose(linflow.preconditioned_gradient(w, g, 1), g, atol=1e-12)

    w0, g0 = np.asarray(w[0]), np.asarray(g[0])
    left = w0 @ w0.T

    def right_power(p):  # (WᵀW)^p = Wᵀ (WWᵀ)^(p-1) W for W of full row rank
        return w0.T @ scipy.linalg.fractional_matrix_power(left, p - 1) @ w0

    # depth 2: W2 W2ᵀ G + G W1ᵀ W1 with W2 W2ᵀ = (WWᵀ)^(1/2), W1ᵀ W1 = (WᵀW)^(1/2)
    expected = scipy.linalg.sqrtm(left) @ g0 + g0 @ right_power(1 / 2)
    np.testing.assert_allclose(linflow.preconditioned_gradient(w0, g0, 2), expected, atol=1e-10)
    # depth 3: (WWᵀ)^(2/3) G + (WWᵀ)^(1/3) G (WᵀW)^(1/3) + G (WᵀW)^(2/3)
    expected = (
        scipy.linalg.fractional_matrix_power(left, 2 / 3) @ g0
        + scipy.linalg.fractional_matrix_power(left, 1 / 3) @ g0 @ right_power(1 / 3)
        + g0 @ right_power(2 / 3)
    )
    np.testing.assert_allclose(linflow.preconditioned_gradient(w0, g0, 3), expected, atol=1e-8)


def test_effective_rank_and_errors():
    np.testing.assert_allclose(linflow.effective_rank(jnp.diag(jnp.array([2.0, 2.0, 0.0]))), 2.0)
    np.testing.assert_allclose(linflow.effective_rank(jnp.outer(jnp.ones(3), jnp.ones(4))), 1.0)
    target = linflow.low_rank_matrix(jax.random.key(6), 6, 5, 2)
    mask = linflow.observation_mask(jax.random.key(7), (6, 5), 11)
    assert float(mask.sum()) == 11
    np.testing.assert_allclose(linflow.unobserved_error(jnp.zeros((6, 5)), target, mask), 1.0)
    np.testing.assert_allclose(linflow.unobserved_error(target, target, mask), 0.0)
    with pytest.raises(ValueError, match="n_obs"):
        linflow.observation_mask(jax.random.key(0), (2, 2), 5)
    with pytest.raises(ValueError, match="rank"):
        linflow.low_rank_matrix(jax.random.key(0), 2, 3, 3)
    with pytest.raises(ValueError, match="depth"):
        linflow.end_to_end_flow(lambda w: jnp.sum(w**2), jnp.ones((2, 2)), [1.0], depth=0)


def test_sensing_loss_matches_mask_as_measurements():
    target = linflow.low_rank_matrix(jax.random.key(8), 4, 3, 1)
    mask = linflow.observation_mask(jax.random.key(9), (4, 3), 5)
    rows, cols = np.nonzero(np.asarray(mask))
    a = jnp.zeros((5, 4, 3)).at[jnp.arange(5), rows, cols].set(1.0)
    y = jnp.einsum("kmd,md->k", a, target)
    w = jax.random.normal(jax.random.key(10), (4, 3))
    np.testing.assert_allclose(
        linflow.sensing_loss(w, (a, y)), linflow.observed_loss(w, (target, mask)), rtol=1e-12
    )


def test_nuclear_norm_completion_is_a_min_nuclear_norm_interpolant():
    target = linflow.low_rank_matrix(jax.random.key(11), 12, 12, 1)
    masks = jnp.stack(
        [linflow.observation_mask(jax.random.key(k), (12, 12), n) for k, n in ((1, 80), (2, 120))]
    )
    x = linflow.nuclear_norm_completion(target, masks, steps=1500)
    assert x.shape == (2, 12, 12)
    fit = jnp.sqrt(jnp.sum((masks * (x - target[None])) ** 2, axis=(1, 2)))
    np.testing.assert_array_less(fit, 1e-4 * jnp.linalg.norm(target))
    nuclear = jnp.sum(jnp.linalg.svd(x, compute_uv=False), axis=-1)
    # M itself fits the observations, so the minimiser's nuclear norm is at most M's
    np.testing.assert_array_less(nuclear, 1.00001 * jnp.sum(jnp.linalg.svd(target)[1]))
    # with most entries seen, the minimiser is M (exact recovery)
    assert float(linflow.unobserved_error(x[1], target, masks[1])) < 1e-4
