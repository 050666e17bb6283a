import jax.numpy as jnp
import numpy as np
import pytest

import linflow

GRID = jnp.stack(jnp.meshgrid(*2 * [jnp.linspace(-2.0, 2.0, 9)]), -1).reshape(-1, 2)


@pytest.fixture(scope="module", params=[(1.5, 2.0), (0.5, 1.0)])
def pair(request):
    s, tau = request.param
    return s, tau, linflow.fixed_points(linflow.scalar_pair(s, tau), GRID)


def test_scalar_pair_origin_is_the_only_isolated_fixed_point_a_saddle(pair):
    s, tau, points = pair
    isolated = [p for p in points if p.kind != "non-isolated"]
    assert len(isolated) == 1
    (origin,) = isolated
    assert origin.kind == "saddle"
    assert np.allclose(origin.point, 0.0, atol=1e-12)
    # J(0) = [[0, s], [s, 0]] / τ: eigenvalues ±s/τ.
    assert np.allclose(origin.jacobian, np.array([[0.0, s], [s, 0.0]]) / tau, atol=1e-12)
    assert np.allclose(origin.eigenvalues, [-s / tau, s / tau], atol=1e-12)


def test_scalar_pair_hyperbola_is_a_line_of_non_isolated_fixed_points(pair):
    s, tau, points = pair
    line = [p for p in points if p.kind == "non-isolated"]
    xy = np.array([np.asarray(p.point) for p in line])
    assert len(line) > 10
    assert np.abs(xy[:, 0] * xy[:, 1] - s).max() < 1e-10  # all on ab = s
    assert (xy[:, 0] > 0).any() and (xy[:, 0] < 0).any()  # both branches
    for p in line:
        a, b = np.asarray(p.point)
        lam = np.asarray(p.eigenvalues)
        # One zero eigenvalue (along the hyperbola), one negative: -(a² + b²)/τ.
        assert np.allclose(lam.imag, 0.0)
        assert abs(lam.real[1]) < 1e-10
        assert np.isclose(lam.real[0], -(a**2 + b**2) / tau, rtol=1e-10)


def linear(matrix):
    A = jnp.asarray(matrix, dtype=float)
    return lambda x: A @ x


@pytest.mark.parametrize(
    ("matrix", "kind"),
    [
        ([[-1.0, 0.0], [0.0, -3.0]], "stable node"),
        ([[1.0, 0.5], [0.0, 2.0]], "unstable node"),
        ([[2.0, 0.0], [0.0, -1.0]], "saddle"),
        ([[-1.0, 2.0], [-2.0, -1.0]], "stable focus"),
        ([[0.5, -2.0], [2.0, 0.5]], "unstable focus"),
        ([[0.0, 1.0], [-4.0, 0.0]], "centre"),
    ],
)
def test_linear_systems_are_classified(matrix, kind):
    (point,) = linflow.fixed_points(linear(matrix), GRID)
    assert point.kind == kind
    assert np.allclose(point.point, 0.0, atol=1e-12)
    assert np.allclose(
        np.sort_complex(point.eigenvalues), np.sort_complex(np.linalg.eigvals(matrix))
    )


def test_line_of_fixed_points_and_degenerate_point():
    # ẋ = -x, ẏ = 0: the whole y-axis is fixed.
    points = linflow.fixed_points(linear([[-1.0, 0.0], [0.0, 0.0]]), GRID)
    assert len(points) == 9 and {p.kind for p in points} == {"non-isolated"}
    assert np.allclose([p.point[0] for p in points], 0.0, atol=1e-12)
    # ẋ = -x³ has a single fixed point with J = 0: isolated but not hyperbolic.
    (point,) = linflow.fixed_points(lambda x: -(x**3), jnp.linspace(-1.0, 1.0, 5)[:, None])
    assert point.kind == "degenerate" and abs(float(point.point[0])) < 1e-6


def test_fixed_points_of_the_two_mode_network():
    # A 1 x 1 network W2 W1 with s = 2 is the scalar pair; found through the mode equations.
    task = linflow.Task(jnp.array([[2.0]]))

    def field(x):
        bar = (x[0].reshape(1, 1), x[1].reshape(1, 1))
        return jnp.stack([d.reshape(()) for d in linflow.mode_equations(task, bar)])

    points = linflow.fixed_points(field, GRID)
    kinds = [p.kind for p in points]
    assert kinds.count("saddle") == 1 and set(kinds) == {"saddle", "non-isolated"}


def test_bad_starts():
    with pytest.raises(ValueError, match="fixed_points"):
        linflow.fixed_points(linflow.scalar_pair(1.0), jnp.zeros(3))
    with pytest.raises(ValueError, match="tol"):
        linflow.fixed_points(linflow.scalar_pair(1.0), GRID, tol=0.0)
    assert linflow.fixed_points(lambda x: x**2 + 1.0, GRID) == []


def test_phase_portrait_renders(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    ax = linflow.plot.phase_portrait(1.0, tau=2.0, starts=np.array([[0.1, 0.2], [-1.5, 1.2]]))
    path = tmp_path / "phase.png"
    ax.figure.savefig(path, dpi=60)
    assert path.stat().st_size > 10_000
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "fixed point: saddle" in labels and "fixed point: non-isolated" in labels
    # Trajectories from the exact solution end on the hyperbola ab = s.
    trajectories = [line for line in ax.get_lines() if line.get_linewidth() == 1.0]
    ends = np.array([line.get_xydata()[-1] for line in trajectories if len(line.get_xydata()) > 1])
    assert len(ends) == 2 and np.allclose(ends[:, 0] * ends[:, 1], 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="phase_portrait"):
        linflow.plot.phase_portrait(-1.0)
