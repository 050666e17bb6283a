r"""Matplotlib figures of learning trajectories.

matplotlib is imported inside each function, so that `import linflow` never needs it.
Every function draws into the Axes it is given (or a new pyplot figure) and returns the Axes.
A `Trajectory` with batch axes is drawn for its first initialisation (index 0 along every
batch axis).
"""

from __future__ import annotations

import numpy as np

from ._task import Task
from ._trajectory import Trajectory

# Line styles told apart even where curves overlap: the first is wide and faint, so that
# the thinner ones drawn on top of it stay visible when two engines agree.
_STYLES = (
    {"linestyle": "-", "linewidth": 3.5, "alpha": 0.35},
    {"linestyle": "--", "linewidth": 1.6},
    {"linestyle": ":", "linewidth": 2.2},
    {"linestyle": "-.", "linewidth": 1.3},
)
_ANALYTIC = {"color": "black", "linestyle": (0, (4, 3)), "linewidth": 0.8}


def _axes(ax):
    """`ax`, or the Axes of a new pyplot figure (shown in notebooks)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4), layout="constrained")[1]


def _first(values, n_rest: int) -> np.ndarray:
    """`values` of shape `(T, *batch, *rest)` at batch index 0, as NumPy of shape `(T, *rest)`."""
    values = np.asarray(values)
    rest = values.shape[values.ndim - n_rest :]
    return values.reshape(values.shape[0], -1, *rest)[:, 0]


def mode_strengths(
    trajectories: dict[str, Trajectory], task: Task, *, analytic=None, ax=None, title=None
):
    r"""Plot mode strengths $u_\alpha(t) = u^{\alpha\top} W(t)\, v^\alpha$ against time.

    One colour per mode $\alpha$ (the same in every trajectory), one line style per
    trajectory, and a dotted grey line at each singular value $s_\alpha$ of $\Sigma_{yx}$,
    which a network that learns the mode converges to. Modes with equal singular values whose
    curves coincide in every trajectory (as from an aligned start) are drawn once, with one
    legend entry naming them all, so that neither hides the other.

    **Arguments:**

    - `trajectories`: dict mapping a label (e.g. the engine) to a `linflow.Trajectory`;
      trajectories with batch axes are drawn for batch index 0.
    - `task`: the `linflow.Task` whose modes (`task.modes()`) define $u_\alpha$.
    - `analytic`: optional dict mapping a label to `(ts, values)` with `ts` of shape `(T,)`
      and `values` of shape `(T, k)`, e.g. from `linflow.saxe_deep`; drawn as thin black
      dashed lines.
    - `ax`: a matplotlib Axes to draw into (default: a new figure).
    - `title`: the Axes title.

    **Returns:** the matplotlib Axes.

    **Example:**

    ```python
    ts = jnp.linspace(0.0, 20.0, 201)
    traj = linflow.gradient_flow(task, weights0, ts)
    u = linflow.saxe_deep(ts[:, None], task.modes()[1][None, :], 1e-3)
    ax = linflow.plot.mode_strengths({"flow": traj}, task, analytic={"saxe_deep": (ts, u)})
    ax.figure.savefig("modes.png")
    ```
    """
    from matplotlib.lines import Line2D

    ax = _axes(ax)
    s = np.asarray(task.modes()[1])
    strengths = [_first(traj.mode_strengths(task), 1) for traj in trajectories.values()]
    groups = _coinciding_modes(s, strengths)
    colours = [f"C{i % 10}" for i in range(len(groups))]
    for i, (traj, u) in enumerate(zip(trajectories.values(), strengths)):
        for group, colour in zip(groups, colours):
            ax.plot(np.asarray(traj.ts), u[:, group[0]], color=colour, **_style(i))
    for ts, values in (analytic or {}).values():
        ax.plot(np.asarray(ts), np.asarray(values), **_ANALYTIC)
    for value in np.unique(s):
        ax.axhline(value, color="grey", linestyle=":", linewidth=0.8, zorder=0)

    # One legend, line styles (trajectories) in the first column and colours (modes) in the
    # second; blank entries pad the shorter column so that neither spills into the other.
    styles = [
        Line2D([], [], color="black", label=label, **_style(i))
        for i, label in enumerate(trajectories)
    ]
    styles += [Line2D([], [], label=f"{label} (analytic)", **_ANALYTIC) for label in analytic or {}]
    styles.append(Line2D([], [], color="grey", linestyle=":", linewidth=0.8, label=r"$s_\alpha$"))
    modes = [
        Line2D([], [], color=colour, label=_modes_label(group, s[group[0]]))
        for group, colour in zip(groups, colours)
    ]
    rows = max(len(styles), len(modes))
    blank = Line2D([], [], linestyle="none", label=" ")
    handles = [*styles, *[blank] * (rows - len(styles)), *modes, *[blank] * (rows - len(modes))]
    # Below the Axes: inside, the legend would hide some rising curve wherever it went.
    ax.legend(
        handles=handles,
        ncols=2,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        fontsize="small",
        frameon=False,
    )

    ax.set_xlabel(_time_label(trajectories.values()))
    ax.set_ylabel(r"mode strength $u_\alpha$")
    if title is not None:
        ax.set_title(title)
    return ax


def loss(trajectories: dict[str, Trajectory], task: Task, *, ax=None, logy=False):
    r"""Plot the excess loss $L(W(t)) - L_{\min}$ against time, one line per trajectory.

    $L_{\min}$ is the loss at the optimum $W_* = \Sigma_{yx}\Sigma_{xx}^+$ (zero for realisable
    targets). On the default linear axis the stages of a deep network show as plateaus; for
    whitened inputs, dotted lines mark the plateau levels
    $\tfrac12\sum_{\alpha > k} s_\alpha^2$ reached when the modes $1, \dots, k$ are learned
    (one per distinct singular value). A logarithmic axis (`logy=True`) shows the final
    convergence instead.

    **Arguments:**

    - `trajectories`: dict mapping a label to a `linflow.Trajectory` (batch index 0 is drawn).
    - `task`: the `linflow.Task`.
    - `ax`: a matplotlib Axes to draw into (default: a new figure).
    - `logy`: logarithmic loss axis (and no plateau levels).

    **Returns:** the matplotlib Axes.

    **Example:**

    ```python
    ax = linflow.plot.loss({"gd": gd_traj, "flow": flow_traj}, task)
    ```
    """
    ax = _axes(ax)
    loss_min = float(task.loss_min)
    for i, (label, traj) in enumerate(trajectories.items()):
        values = _first(traj.loss(task), 0) - loss_min
        ax.plot(np.asarray(traj.ts), values, color=f"C{i % 10}", label=label, **_style(i))
    if logy:
        ax.set_yscale("log")
    elif task.whitened:
        s = np.asarray(task.modes()[1])
        for value in np.unique(s)[::-1][:-1]:
            learned = int(np.sum(s >= value))
            level = 0.5 * float(np.sum(s[learned:] ** 2))
            ax.axhline(level, color="grey", linestyle=":", linewidth=0.8, zorder=0)
            modes = "mode 1" if learned == 1 else f"modes 1-{learned}"
            ax.annotate(
                f"{modes} learned",
                (1.0, level),
                xycoords=("axes fraction", "data"),
                xytext=(-3, 2),
                textcoords="offset points",
                ha="right",
                va="bottom",
                fontsize="small",
                color="0.35",
            )
    ax.set_xlabel(_time_label(trajectories.values()))
    ax.set_ylabel(r"excess loss $L - L_{\min}$")
    ax.legend(fontsize="small")
    return ax


def _time_label(trajectories) -> str:
    """The time axis in the trajectories' `unit`: steps of gradient descent, or a flow's $t$."""
    units = {traj.unit for traj in trajectories}
    taus = {float(traj.tau) for traj in trajectories if traj.tau is not None}
    if units == {"steps"}:
        return "gradient-descent steps"
    if units == {"time"} and len(taus) == 1:
        return rf"time $t$ ($\tau = {taus.pop():g}$)"
    return r"time (steps of gradient descent, $t$ of the flows)"


def _coinciding_modes(s, strengths) -> list[list[int]]:
    """Modes grouped where their singular values are equal and their curves coincide to within
    0.1 % of the largest singular value in every trajectory (of shape `(T, k)`)."""
    tol = 1e-3 * float(np.max(np.abs(s), initial=0.0))
    groups = []
    for alpha in range(s.size):
        for group in groups:
            beta = group[0]
            if abs(s[alpha] - s[beta]) <= tol and all(
                np.nanmax(np.abs(u[:, alpha] - u[:, beta]), initial=0.0) <= tol for u in strengths
            ):
                group.append(alpha)
                break
        else:
            groups.append([alpha])
    return groups


def _modes_label(group: list[int], s: float) -> str:
    """Legend entry of a group of modes: "$\alpha=3, 4$ (equal curves), $s=1$"."""
    alphas = ", ".join(str(alpha + 1) for alpha in group)
    same = " (equal curves)" if len(group) > 1 else ""
    return rf"$\alpha={alphas}${same}, $s={s:.3g}$"


def _style(i: int) -> dict:
    """Line style of the `i`-th trajectory (cycling)."""
    return _STYLES[i % len(_STYLES)]


def phase_portrait(
    s=1.0,
    *,
    tau=1.0,
    extent=2.0,
    starts=None,
    t_max=None,
    conserved=(-2.0, -0.5, 0.5, 2.0),
    ax=None,
):
    r"""Phase portrait of one mode, $\tau\,\dot a = (s - ab)\,b$, $\tau\,\dot b = (s - ab)\,a$.

    The phase portrait of the scalar pair of Saxe, McClelland & Ganguli (2014, "Exact solutions
    to the nonlinear dynamics of learning in deep linear neural networks"), as asked for in the
    course homework "Deep linear neural networks" (2024, exercise 6). Draws, on
    $[-\text{extent}, \text{extent}]^2$:

    - the vector field (grey arrows of unit length, `linflow.scalar_pair`);
    - the nullclines $\dot a = 0$ ($b = 0$ or $ab = s$) and $\dot b = 0$ ($a = 0$ or $ab = s$),
      as the zero contours of the two components of the field;
    - curves of the conserved imbalance $b^2 - a^2 = c$ for each $c$ in `conserved`;
    - sample trajectories from the exact solution (`linflow.scalar_mode`);
    - the fixed points found and classified by `linflow.fixed_points`: the saddle at the origin
      and the hyperbola $ab = s$ of non-isolated fixed points.

    **Arguments:**

    - `s`, `tau`: singular value and time constant.
    - `extent`: half-width of the square drawn.
    - `starts`: initial points $(a_0, b_0)$ of the trajectories, shape `(P, 2)` (default: eight
      points on a small circle around the origin, and four near the corners).
    - `t_max`: length of the trajectories (default $8\tau/s$).
    - `conserved`: the levels $c$ of $b^2 - a^2$ to draw.
    - `ax`: a matplotlib Axes to draw into (default: a new figure).

    **Returns:** the matplotlib Axes.

    **Raises:** `ValueError` unless `s`, `tau` and `extent` are positive.

    **Example:**

    ```python
    ax = linflow.plot.phase_portrait(1.0)
    ax.figure.savefig("phase.png")
    ```
    """
    import jax
    import jax.numpy as jnp
    from matplotlib.lines import Line2D

    from ._checks import check_positive
    from ._exact.scalar import scalar_mode
    from ._phase import fixed_points, scalar_pair

    for name, value in (("s", s), ("tau", tau), ("extent", extent)):
        check_positive("phase_portrait", name, value)
    s = float(s)
    ax = _axes(ax)
    field = scalar_pair(s, tau)
    lim = float(extent)
    if starts is None:
        angle = np.linspace(0.0, 2 * np.pi, 8, endpoint=False) + np.pi / 8
        corners = np.array([[1.0, -0.9], [-0.9, 1.0], [-1.0, 0.9], [0.9, -1.0]]) * 0.9 * lim
        starts = np.concatenate([0.15 * lim * np.stack([np.cos(angle), np.sin(angle)], 1), corners])
    starts = np.asarray(starts, dtype=float)
    t_max = 8.0 * float(tau) / float(s) if t_max is None else float(t_max)

    fine = np.linspace(-lim, lim, 201)
    A, B = np.meshgrid(fine, fine)
    flow = np.asarray(jax.jit(jax.vmap(field))(jnp.asarray(np.stack([A.ravel(), B.ravel()], 1))))
    flow = flow.reshape(*A.shape, 2)
    coarse = slice(None, None, 12)
    speed = np.maximum(np.hypot(flow[..., 0], flow[..., 1]), 1e-12)
    ax.quiver(
        A[coarse, coarse],
        B[coarse, coarse],
        (flow[..., 0] / speed)[coarse, coarse],
        (flow[..., 1] / speed)[coarse, coarse],
        color="0.6",
        angles="xy",
        pivot="mid",
        width=0.003,
    )
    ax.contour(A, B, flow[..., 0], levels=[0.0], colors="C0", linewidths=2.5, alpha=0.5)
    ax.contour(A, B, flow[..., 1], levels=[0.0], colors="C1", linewidths=1.2, linestyles="--")
    ax.contour(
        A, B, B**2 - A**2, levels=sorted(conserved), colors="C2", linewidths=0.8, linestyles=":"
    )

    ts = np.linspace(0.0, t_max, 400)
    a, b = jax.jit(scalar_mode)(ts[:, None], s, starts[None, :, 0], starts[None, :, 1], tau)
    for p in range(starts.shape[0]):
        ax.plot(np.asarray(a)[:, p], np.asarray(b)[:, p], color="black", linewidth=1.0)
        ax.plot(*starts[p], "o", color="black", markersize=3)

    grid = np.linspace(-lim, lim, 9)
    guesses = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    points = fixed_points(field, guesses)
    markers = {"saddle": "X", "stable node": "o", "unstable node": "s", "non-isolated": "."}
    handles = [
        Line2D([], [], color="C0", linewidth=2.5, alpha=0.5, label=r"nullcline $\dot a = 0$"),
        Line2D([], [], color="C1", linewidth=1.2, linestyle="--", label=r"nullcline $\dot b = 0$"),
        Line2D([], [], color="C2", linewidth=0.8, linestyle=":", label=r"$b^2 - a^2$ = const"),
        Line2D([], [], color="black", linewidth=1.0, label="trajectory"),
    ]
    for kind in dict.fromkeys(p.kind for p in points):
        xy = np.array([np.asarray(p.point) for p in points if p.kind == kind])
        size = 7 if kind == "non-isolated" else 11
        ax.plot(xy[:, 0], xy[:, 1], markers.get(kind, "D"), color="C3", markersize=size, zorder=5)
        handles.append(
            Line2D(
                [],
                [],
                marker=markers.get(kind, "D"),
                color="C3",
                linestyle="none",
                markersize=size,
                label=f"fixed point: {kind}",
            )
        )
    ax.legend(handles=handles, fontsize="small", loc="upper left", framealpha=0.9)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$a$")
    ax.set_ylabel("$b$")
    ax.set_title(rf"$\tau\,\dot a = (s - ab)\,b$, $\tau\,\dot b = (s - ab)\,a$, $s = {s:g}$")
    return ax


def _band(ax, ts, values, color, label, dashed=False):
    """Median over the batch (axis 1) with a shaded 10-90 % band; a `dashed` median (and band
    edge) stays visible on top of an equal one."""
    low, median, high = np.nanpercentile(values, [10, 50, 90], axis=1)
    ax.plot(ts, median, color=color, label=label, linestyle="--" if dashed else "-")
    if dashed:
        ax.fill_between(ts, low, high, facecolor="none", edgecolor=color, linestyle="--")
    else:
        ax.fill_between(ts, low, high, color=color, alpha=0.2, linewidth=0)


def _band_legend(ax, batch: int, extra=(), **legend_kwargs):
    """The legend of a sweep plot: its entries, then what the line and the band show."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    handles += [
        *extra,
        Line2D([], [], color="0.3", label=f"line: median of {batch} initialisations"),
        Patch(color="0.3", alpha=0.2, linewidth=0, label="band: 10-90 % of them"),
    ]
    ax.legend(handles=handles, fontsize="small", **legend_kwargs)


# Sweeps run either engine: gradient descent saves at steps, the flows at times of the config.
_SWEEP_TIME = "time $t$ (gradient-descent steps, or gradient-flow time)"


def _sweep_label(result) -> str:
    """`scheme, scale s` (text, never mathtext), marked when chunk files are missing."""
    label = f"{result['scheme']}, scale {result['scale']:g}".replace("$", r"\$")
    return label if result.get("complete", True) else label + " (incomplete)"


def _note_incomplete(ax, results) -> None:
    """Say on the axes how many chunk files of the sweep are missing, if any."""
    missing = sum(len(r.get("missing", ())) for r in results)
    if missing:
        ax.text(
            0.5,
            0.98,
            f"incomplete: {missing} chunk file(s) missing",
            transform=ax.transAxes,
            ha="center",
            va="top",
            color="red",
            fontsize="small",
        )


def sweep_loss(results, *, ax=None):
    r"""Plot the loss of every (scheme, scale) of a sweep: median and 10-90 % band over the batch.

    **Arguments:** `results` from `linflow.load_sweep` (with `loss` saved); `ax` (default: a
    new figure).

    **Returns:** the matplotlib Axes.

    **Example:**

    ```python
    linflow.plot.sweep_loss(linflow.load_sweep("results"))
    ```
    """
    ax = _axes(ax)
    drawn = [r for r in results if "loss" in r]
    for i, result in enumerate(drawn):
        _band(ax, result["ts"], result["loss"], f"C{i % 10}", _sweep_label(result))
    ax.set_yscale("log")
    ax.set_xlabel(_SWEEP_TIME)
    ax.set_ylabel("loss $L$")
    _band_legend(ax, drawn[0]["loss"].shape[1] if drawn else 0)
    _note_incomplete(ax, results)
    return ax


def sweep_mode_strengths(result, *, ax=None):
    r"""Plot the mode strengths $u_\alpha(t)$ of one (scheme, scale) of a sweep over its batch.

    One colour per mode: the median and 10-90 % band over the batch, and a dotted line at
    each singular value $s_\alpha$.

    **Arguments:** `result`, one entry of `linflow.load_sweep` (with `mode_strengths` saved);
    `ax` (default: a new figure).

    **Returns:** the matplotlib Axes.

    **Example:**

    ```python
    linflow.plot.sweep_mode_strengths(linflow.load_sweep("results")[0])
    ```
    """
    from matplotlib.lines import Line2D

    ax = _axes(ax)
    singular_values = result["singular_values"]
    for alpha, s in enumerate(singular_values):
        colour = f"C{alpha % 10}"
        label = rf"$\alpha={alpha + 1}$, $s={s:.3g}$"
        repeated = _repeated(singular_values, alpha)
        _band(ax, result["ts"], result["mode_strengths"][..., alpha], colour, label, repeated)
        ax.axhline(s, color=colour, linestyle=":", linewidth=0.8)
    ax.set_xlabel(_SWEEP_TIME)
    ax.set_ylabel(r"mode strength $u_\alpha$")
    ax.set_title(_sweep_label(result))
    limit = Line2D([], [], color="0.3", linestyle=":", linewidth=0.8, label=r"$s_\alpha$")
    # Below the Axes, where it hides no band.
    _band_legend(
        ax,
        result["mode_strengths"].shape[1],
        extra=[limit],
        ncols=2,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        frameon=False,
    )
    _note_incomplete(ax, [result])
    return ax


def _repeated(singular_values, alpha: int) -> bool:
    """Whether mode `alpha` has the singular value of an earlier mode (and may hide under it)."""
    s = np.asarray(singular_values)
    return bool(np.any(np.isclose(s[:alpha], s[alpha], rtol=1e-6)))


def sweep_learning_times(result, *, ax=None, bins=40):
    r"""Histogram of the time each mode takes to reach $s_\alpha/2$, over the batch of a sweep.

    **Arguments:** `result`, one entry of `linflow.load_sweep` (with `learning_times` saved);
    `ax` (default: a new figure); `bins` of the histogram. Modes never learned within the
    sweep's times are counted in the legend.

    **Returns:** the matplotlib Axes.

    **Example:**

    ```python
    linflow.plot.sweep_learning_times(linflow.load_sweep("results")[0])
    ```
    """
    ax = _axes(ax)
    times = result["learning_times"]
    finite = times[np.isfinite(times)]
    edges = np.histogram_bin_edges(finite if finite.size else [0.0, 1.0], bins=bins)
    for alpha, s in enumerate(result["singular_values"]):
        t = times[:, alpha]
        missing = int(np.sum(~np.isfinite(t)))
        label = rf"$\alpha={alpha + 1}$, $s={s:.3g}$" + (
            f" ({missing} not learned)" if missing else ""
        )
        # A mode with the singular value of an earlier one is outlined, so both show.
        style = (
            {"histtype": "step", "linewidth": 1.5}
            if _repeated(result["singular_values"], alpha)
            else {"alpha": 0.5}
        )
        ax.hist(t[np.isfinite(t)], bins=edges, color=f"C{alpha % 10}", label=label, **style)
    ax.set_xlabel(r"time to learn, $u_\alpha = s_\alpha / 2$ (same units as $t$)")
    ax.set_ylabel(f"initialisations (of {times.shape[0]})")
    ax.set_title(_sweep_label(result))
    ax.legend(fontsize="small")
    _note_incomplete(ax, [result])
    return ax
