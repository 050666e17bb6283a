r"""Built-in tasks: small data sets whose learning dynamics are known in closed form."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_dtype, check_int, check_key, known
from ._init import _haar
from ._task import Task

_ITEMS = ("Canary", "Salmon", "Oak", "Rose")
_PROPERTIES = ("Grow", "Move", "Roots", "Fly", "Swim", "Leaves", "Petals")
# Which properties each item has (rows: items, columns: properties).
_HAS = (
    (1, 1, 0, 1, 0, 0, 0),  # Canary: grows, moves, flies
    (1, 1, 0, 0, 1, 0, 0),  # Salmon: grows, moves, swims
    (1, 0, 1, 0, 0, 1, 0),  # Oak: grows, has roots and leaves
    (1, 0, 1, 0, 0, 0, 1),  # Rose: grows, has roots and petals
)


def saxe_hierarchy(dtype=None):
    r"""The four-item hierarchy of Saxe, McClelland & Ganguli (PNAS 2019), Fig. 3.

    Items Canary, Salmon, Oak, Rose are one-hot inputs, $X = I_4$ (rows are samples); the
    targets $Y$ (4 × 7) list which of the properties Grow, Move, Roots, Fly, Swim, Leaves,
    Petals each item has:

    | item   | Grow | Move | Roots | Fly | Swim | Leaves | Petals |
    | ------ | ---- | ---- | ----- | --- | ---- | ------ | ------ |
    | Canary | 1    | 1    | 0     | 1   | 0    | 0      | 0      |
    | Salmon | 1    | 1    | 0     | 0   | 1    | 0      | 0      |
    | Oak    | 1    | 0    | 1     | 0   | 0    | 1      | 0      |
    | Rose   | 1    | 0    | 1     | 0   | 0    | 0      | 1      |

    With the summed statistics ($\Sigma_{xx} = X^\top X = I$, $\Sigma_{yx} = Y^\top X = Y^\top$),
    $\Sigma_{yx}^\top\Sigma_{yx} = Y Y^\top$ has eigenvectors that follow the tree: all items
    (eigenvalue 7: every item grows), animals against plants (3), and canary against
    salmon, oak against rose (1 each). So $\Sigma_{yx} = U S V^\top$ has singular values
    $s = (\sqrt7, \sqrt3, 1, 1)$, and a deep network learns the broad distinction first and
    the fine ones last (`linflow.time_to_learn` grows as $1/s$), while a shallow network learns
    them all at the same rate.

    **Arguments:**

    - `dtype`: floating dtype of the task (default: JAX's default float, `float64` under x64).

    **Returns:** `(task, items, properties)`: a `linflow.Task` from
    `Task.from_data(X, Y, normalize="sum")` (so $\Sigma_{yx}$ has shape `(7, 4)` and the data
    are kept for SGD), and the item and property names as tuples of strings, in the order of
    the columns of $\Sigma_{yx}$ and of its rows.

    **Example:**

    ```python
    task, items, properties = linflow.tasks.saxe_hierarchy()
    U, s, V = task.modes()   # s == [sqrt(7), sqrt(3), 1, 1]
    ```
    """
    dtype = _dtype(dtype)
    X = jnp.eye(len(_ITEMS), dtype=dtype)
    Y = jnp.asarray(_HAS, dtype=dtype)
    return Task.from_data(X, Y, normalize="sum"), _ITEMS, _PROPERTIES


# The eight items of the semantic hierarchy, leaves of a depth-3 binary tree in the order
# fish, birds, trees, flowers, and one property per node of the tree, breadth first.
_SEMANTIC_ITEMS = ("Salmon", "Sunfish", "Canary", "Robin", "Oak", "Pine", "Rose", "Daisy")
_SEMANTIC_PROPERTIES = (
    "Grow",  # every item
    "Move",  # animals
    "Roots",  # plants
    "Swim",  # fish
    "Fly",  # birds
    "Bark",  # trees
    "Petals",  # flowers
    "Pink",  # salmon
    "Yellow",  # sunfish
    "Sing",  # canary
    "Red",  # robin
    "Acorns",  # oak
    "Needles",  # pine
    "Thorns",  # rose
    "White",  # daisy
)


def _dtype(dtype):
    return jnp.result_type(float) if dtype is None else dtype


def _tree_targets(depth: int) -> np.ndarray:
    """Which items (leaves) lie under each node of a binary tree, shape `(2**depth, nodes)`."""
    columns = []
    for level in range(depth + 1):
        width = 2 ** (depth - level)  # items under a node of this level
        for node in range(2**level):
            column = np.zeros(2**depth)
            column[node * width : (node + 1) * width] = 1.0
            columns.append(column)
    return np.stack(columns, axis=1)


def binary_tree(depth: int, *, noise=0.0, key=None, dtype=None):
    r"""A hierarchy of $2^D$ items on a binary tree of depth $D$, one property per node.

    Item $i$ (a one-hot input, $X = I$) has the property of node $\nu$ when it is a leaf
    under $\nu$, so the root's property is shared by all items and each leaf's by one item
    (the hierarchical data of Saxe, McClelland & Ganguli, PNAS 2019, without their
    branching noise unless `noise` is set). The properties are listed breadth first.
    With the summed statistics, $\Sigma_{yx}^\top \Sigma_{yx} = Y Y^\top$ has the tree's
    Haar-like vectors as eigenvectors: the uniform vector, and at each level $l \ge 1$ the
    $2^{l-1}$ differences between the two children of a node of level $l - 1$, with
    eigenvalue $\sum_{j \ge l} 2^{D - j} = 2^{D - l + 1} - 1$. The singular values are
    therefore $\sqrt{2^{D+1} - 1}$ (once), $\sqrt{2^{D} - 1}$ (once), ...,
    $\sqrt{2^{D - l + 1} - 1}$ ($2^{l-1}$ times), ..., $1$ ($2^{D-1}$ times); for $D = 2$ this
    is `saxe_hierarchy` ($\sqrt7, \sqrt3, 1, 1$).

    **Arguments:**

    - `depth`: $D \ge 1$.
    - `noise`: probability in $[0, 1)$ with which each entry of $Y$ is flipped independently
      (needs `key`).
    - `key`: a `jax.random` key for the noise.
    - `dtype`: floating dtype (default: JAX's default float).

    **Returns:** `(task, items, properties)`, with `task = Task.from_data(I, Y, normalize="sum")`
    ($\Sigma_{yx}$ of shape `(2**(D+1) - 1, 2**D)`) and names `"item 0"`, ... and
    `"node l.j"` (node $j$ of level $l$).

    **Raises:** `ValueError` for a depth below 1, a noise outside $[0, 1)$, or noise without key.

    **Example:**

    ```python
    task, items, properties = linflow.tasks.binary_tree(3)
    task.modes()[1] ** 2   # 15, 7, 3, 3, 1, 1, 1, 1
    ```
    """
    fn = "binary_tree"
    if not isinstance(depth, int | np.integer) or depth < 1:
        raise ValueError(f"{fn}(depth={depth!r}) must be an int >= 1.")
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"{fn}(..., noise={noise!r}) must lie in [0, 1).")
    if noise > 0 and key is None:
        raise ValueError(f"{fn}(..., noise={noise!r}) needs key=... to draw the flips.")
    dtype = _dtype(dtype)
    Y = jnp.asarray(_tree_targets(int(depth)), dtype)
    if noise > 0:
        flips = jax.random.bernoulli(key, noise, Y.shape)
        Y = jnp.where(flips, 1.0 - Y, Y)
    items = tuple(f"item {i}" for i in range(2**depth))
    properties = tuple(f"node {l}.{j}" for l in range(depth + 1) for j in range(2**l))
    X = jnp.eye(2**depth, dtype=dtype)
    return Task.from_data(X, Y, normalize="sum"), items, properties


def semantic_hierarchy(dtype=None):
    r"""Eight living things on a three-level hierarchy (after Rumelhart & Todd 1993).

    The eight items of the semantic-cognition network of Rumelhart & Todd (1993), also
    discussed by Saxe, McClelland & Ganguli (PNAS 2019): fish (Salmon, Sunfish), birds
    (Canary, Robin), trees (Oak, Pine) and flowers (Rose, Daisy). The properties are chosen
    here, one per node of the tree, so that the hierarchy is exact (the original data set has
    more, overlapping properties): Grow (all); Move (animals), Roots (plants); Swim (fish),
    Fly (birds), Bark (trees), Petals (flowers); and one property of each item alone (Pink,
    Yellow, Sing, Red, Acorns, Needles, Thorns, White). It is `binary_tree(3)` with names:
    singular values $\sqrt{15}, \sqrt7, \sqrt3, \sqrt3, 1, 1, 1, 1$ (the broad animal/plant
    split is learned first, the individual items last).

    **Arguments:** `dtype`, as for `saxe_hierarchy`.

    **Returns:** `(task, items, properties)`: $\Sigma_{yx}$ of shape `(15, 8)`, and the names.

    **Example:**

    ```python
    task, items, properties = linflow.tasks.semantic_hierarchy()
    ```
    """
    task, _, _ = binary_tree(3, dtype=dtype)
    return task, _SEMANTIC_ITEMS, _SEMANTIC_PROPERTIES


def random_task(key, singular_values, output_dim: int, input_dim: int, dtype=None) -> Task:
    r"""A whitened task $\Sigma_{yx} = U\,\mathrm{diag}(s)\,V^\top$ with a prescribed spectrum.

    $U$ (`(m, k)`) and $V$ (`(d, k)`) are the first $k$ columns of Haar-random orthogonal
    matrices, so the singular values of $\Sigma_{yx}$ are exactly `singular_values` and its
    singular vectors are uniformly random; $\Sigma_{xx} = I$.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `singular_values`: $s$, shape `(k,)`, non-negative, $k \le \min(m, d)$ (missing ones are 0).
    - `output_dim`, `input_dim`: $m$ and $d$.
    - `dtype`: floating dtype.

    **Returns:** a `linflow.Task` with `sigma_yx` of shape `(m, d)`.

    **Raises:** `ValueError` for negative or too many singular values.

    **Example:**

    ```python
    task = linflow.tasks.random_task(jax.random.key(0), [5.0, 2.0, 0.5], 10, 10)
    ```
    """
    fn = "random_task"
    s = np.asarray(singular_values, dtype=float)
    if s.ndim != 1 or s.size == 0 or np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError(f"{fn}(..., singular_values=...) must be a non-empty 1-D array of s >= 0.")
    if s.size > min(output_dim, input_dim):
        raise ValueError(
            f"{fn}(..., singular_values=...) has {s.size} values but min(output_dim, input_dim) "
            f"= {min(output_dim, input_dim)}."
        )
    dtype = _dtype(dtype)
    ku, kv = jax.random.split(key)
    k = s.size
    U = _haar(ku, (), output_dim, dtype)[:, :k]
    V = _haar(kv, (), input_dim, dtype)[:, :k]
    return Task((U * jnp.asarray(s, dtype).reshape(1, k)) @ V.T)


def _data(fn: str, task: Task):
    if not task.has_data:
        raise ValueError(f"{fn}(task=...) needs a task with data (Task.from_data).")
    return task.X, task.Y


def reversal(task: Task, item: int, prop: int) -> Task:
    r"""The same items with one property flipped ($y_{ij} \to 1 - y_{ij}$), for relearning.

    A reversal-learning probe for continual learning: a network that has learned the task
    is told that one item now lacks (or has) a property, and its other predictions show how
    much the change interferes with what it knew. Train on `task` first, then continue from
    the learned weights on `reversal(task, ...)`.

    **Arguments:** `task` a task with data (e.g. from `saxe_hierarchy`), `item` the row of
    $Y$ (index into `items`), `prop` the column (index into `properties`).

    **Returns:** a `linflow.Task` with the same inputs and normalisation.

    **Raises:** `ValueError` for a task without data or an index out of range.

    **Example:**

    ```python
    task, items, properties = linflow.tasks.saxe_hierarchy()
    flipped = linflow.tasks.reversal(task, items.index("Canary"), properties.index("Fly"))
    ```
    """
    fn = "reversal"
    X, Y = _data(fn, task)
    n, m = Y.shape
    if not (0 <= item < n and 0 <= prop < m):
        raise ValueError(f"{fn}(..., item={item}, prop={prop}) must index Y of shape {(n, m)}.")
    Y = Y.at[item, prop].set(1.0 - Y[item, prop])
    return Task.from_data(X, Y, normalize=task.normalize)


def transfer(task: Task, targets, *, keep_old: bool = True) -> Task:
    r"""The task extended by new one-hot items with the given properties, for transfer learning.

    Like the novel items whose properties a network generalises from what it knows (the
    inductive projection of Saxe et al. 2019), the new items get new input units:
    $X' = \begin{pmatrix} X & 0 \\ 0 & I_k \end{pmatrix}$ and
    $Y' = \begin{pmatrix} Y \\ Y_{\text{new}} \end{pmatrix}$ (or only the new rows, with
    `keep_old=False`, to train on the new items alone and watch the old ones). A network
    trained on `task` continues on the new task after appending $k$ zero columns to $W_1$
    (`jnp.pad(W1, ((0, 0), (0, k)))`), which leaves its old predictions unchanged.

    **Arguments:**

    - `task`: a task with data.
    - `targets`: $Y_{\text{new}}$, shape `(k, m)`: the properties of the new items.
    - `keep_old`: keep the old items in the data.

    **Returns:** a `linflow.Task` with input dimension $d + k$.

    **Raises:** `ValueError` for a task without data or targets of the wrong shape.

    **Example:**

    ```python
    task, items, properties = linflow.tasks.saxe_hierarchy()
    sparrow = task.Y[items.index("Canary")][None, :]          # a new bird
    extended = linflow.tasks.transfer(task, sparrow)
    ```
    """
    fn = "transfer"
    X, Y = _data(fn, task)
    targets = jnp.asarray(targets, Y.dtype)
    if targets.ndim != 2 or targets.shape[1] != Y.shape[1] or targets.shape[0] == 0:
        raise ValueError(
            f"{fn}(..., targets=...) must have shape (k, m) with m = {Y.shape[1]}, "
            f"got {targets.shape}."
        )
    k = targets.shape[0]
    new_X = jnp.concatenate([jnp.zeros((k, X.shape[1]), X.dtype), jnp.eye(k, dtype=X.dtype)], 1)
    if not keep_old:
        return Task.from_data(new_X, targets, normalize=task.normalize)
    old_X = jnp.concatenate([X, jnp.zeros((X.shape[0], k), X.dtype)], 1)
    return Task.from_data(
        jnp.concatenate([old_X, new_X]), jnp.concatenate([Y, targets]), normalize=task.normalize
    )


def noisy_teacher(key, d: int, m: int, n_train: int, n_test, *, snr, rank=None, dtype=None):
    r"""Training and test tasks from a linear teacher plus noise (Advani, Saxe & Sompolinsky 2020).

    Inputs $x \sim N(0, I_d)$, targets $y = \bar W x + \varepsilon$ with noise
    $\varepsilon \sim N(0, \sigma_\varepsilon^2 I_m)$ and a teacher $\bar W$ (`(m, d)`, Gaussian,
    of rank `rank`, rescaled so that $\|\bar W\|_F^2 = m\sigma_w^2$ exactly). So each output's
    signal $\bar w_j \cdot x$ has variance $\sigma_w^2$ (averaged over outputs), its noise
    $\sigma_\varepsilon^2$, and

    $$\sigma_w^2 = \frac{\mathrm{snr}}{1 + \mathrm{snr}}, \qquad
    \sigma_\varepsilon^2 = \frac{1}{1 + \mathrm{snr}}:$$

    the signal-to-noise ratio is $\mathrm{snr} = \sigma_w^2/\sigma_\varepsilon^2$ and the targets
    have unit variance per output whatever it is (`snr = 0`: pure noise; `jnp.inf`: none).
    The losses are means over samples (`normalize="mean"`), so train and test error along any
    trajectory are `traj.loss(train)` and `traj.loss(test)`; their averages over samples are
    `linflow.generalization_curve` ($\times m$), with ratio $n_{\text{train}}/d$.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `d`, `m`: input and output dimensions.
    - `n_train`: training samples ($\ge 1$).
    - `n_test`: test samples ($\ge 1$), or `None` for the population: the test task is then
      $\Sigma_{yx} = \bar W$, $\Sigma_{xx} = I$, $\Sigma_{yy} = \bar W \bar W^\top +
      \sigma_\varepsilon^2 I$, whose loss is the expected error on a new sample,
      $\tfrac12\|W - \bar W\|_F^2 + \tfrac12 m\sigma_\varepsilon^2$ (and `test.optimum` is
      the teacher).
    - `snr`: $\ge 0$, may be `jnp.inf`.
    - `rank`: the teacher's rank, in $[1, \min(m, d)]$ (`None`: full rank).
    - `dtype`: float32 or float64 (default: JAX's default float).

    **Returns:** `(train, test)`, two `linflow.Task`s (from data, but for a population test).

    **Raises:** `ValueError` for sizes below 1, a negative or NaN `snr`, or a bad `rank`.

    **Example:**

    ```python
    train, test = linflow.tasks.noisy_teacher(jax.random.key(0), 100, 1, 50, 1000, snr=4.0)
    traj = linflow.gradient_descent(train, weights0, steps=2000, lr=0.1)
    traj.loss(train), traj.loss(test)
    ```
    """
    fn = "noisy_teacher"
    check_key(fn, "key", key)
    d = check_int(fn, "d", d, minimum=1)
    m = check_int(fn, "m", m, minimum=1)
    n_train = check_int(fn, "n_train", n_train, minimum=1)
    if n_test is not None:
        n_test = check_int(fn, "n_test", n_test, minimum=1)
    if rank is not None:
        rank = check_int(fn, "rank", rank, minimum=1, maximum=min(m, d))
    dtype = _dtype(dtype)
    check_dtype(fn, "dtype", dtype)
    snr = jnp.asarray(snr, dtype)
    if snr.ndim != 0:
        raise ValueError(f"{fn}(..., snr=...) must be a scalar, got shape {snr.shape}.")
    bad = ~(snr >= 0)
    if known(bad):
        raise ValueError(f"{fn}(..., snr={float(snr)!r}) must be >= 0 (jnp.inf: no noise).")
    if known(bad) is None:
        snr = eqx.error_if(snr, bad, f"{fn}(..., snr=...) must be >= 0 (jnp.inf: no noise).")
    finite = jnp.isfinite(snr)
    signal = jnp.where(finite, snr / (1 + jnp.where(finite, snr, 0.0)), 1.0)
    noise = 1.0 - signal
    k_teacher, k_factor, k_train, k_test = jax.random.split(key, 4)
    if rank is None:
        teacher = jax.random.normal(k_teacher, (m, d), dtype)
    else:
        teacher = jax.random.normal(k_teacher, (m, rank), dtype) @ jax.random.normal(
            k_factor, (rank, d), dtype
        )
    teacher = teacher * jnp.sqrt(m * signal / jnp.sum(teacher**2))

    def sample(k, n):
        kx, ke = jax.random.split(k)
        X = jax.random.normal(kx, (n, d), dtype)
        return X, X @ teacher.T + jnp.sqrt(noise) * jax.random.normal(ke, (n, m), dtype)

    train = Task.from_data(*sample(k_train, n_train))
    if n_test is None:
        sigma_yy = teacher @ teacher.T + noise * jnp.eye(m, dtype=dtype)
        return train, Task(teacher, sigma_yy=sigma_yy)
    return train, Task.from_data(*sample(k_test, n_test))
