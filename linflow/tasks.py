r"""Built-in tasks: small data sets whose learning dynamics are known in closed form."""

from __future__ import annotations

import jax.numpy as jnp

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
    dtype = jnp.result_type(float) if dtype is None else dtype
    X = jnp.eye(len(_ITEMS), dtype=dtype)
    Y = jnp.asarray(_HAS, dtype=dtype)
    return Task.from_data(X, Y, normalize="sum"), _ITEMS, _PROPERTIES
