"""linflow: learning dynamics of (deep linear) neural networks in JAX."""

import typing as _typing
from importlib import import_module as _import_module
from importlib.metadata import version as _version

__version__ = _version("linflow")

# The public names are imported on first use (PEP 562), so that `import linflow` and the
# command line's `--help` answer without loading JAX. The block below is the list of them;
# `_lazy_names` reads it, so a new public name is added there and nowhere else.
if _typing.TYPE_CHECKING:
    from . import plot as plot
    from . import tasks as tasks
    from ._completion import completion_objective as completion_objective
    from ._completion import effective_rank as effective_rank
    from ._completion import low_rank_matrix as low_rank_matrix
    from ._completion import nuclear_norm_completion as nuclear_norm_completion
    from ._completion import observation_mask as observation_mask
    from ._completion import observed_loss as observed_loss
    from ._completion import sensing_loss as sensing_loss
    from ._completion import unobserved_error as unobserved_error
    from ._descent import gradient_descent as gradient_descent
    from ._diagnostics import illusory_correlations as illusory_correlations
    from ._diagnostics import mode_alignment as mode_alignment
    from ._diagnostics import ntk_movement as ntk_movement
    from ._diagnostics import relative_movement as relative_movement
    from ._diagnostics import weight_movement as weight_movement
    from ._diagonal import diagonal_beta as diagonal_beta
    from ._diagonal import diagonal_limit as diagonal_limit
    from ._diagonal import diagonal_objective as diagonal_objective
    from ._diagonal import diagonal_weights as diagonal_weights
    from ._end_to_end import end_to_end_flow as end_to_end_flow
    from ._end_to_end import preconditioned_gradient as preconditioned_gradient
    from ._end_to_end import singular_value_velocity as singular_value_velocity
    from ._events import acquisition_order as acquisition_order
    from ._events import learning_times as learning_times
    from ._events import plateau_lengths as plateau_lengths
    from ._exact import CLOSED_FORMS as CLOSED_FORMS
    from ._exact import ClosedForm as ClosedForm
    from ._exact import deep_mode as deep_mode
    from ._exact import exact_flow as exact_flow
    from ._exact import saxe_deep as saxe_deep
    from ._exact import scalar_mode as scalar_mode
    from ._exact import shallow as shallow
    from ._exact import time_to_learn as time_to_learn
    from ._flow import gradient_flow as gradient_flow
    from ._generalization import generalization_curve as generalization_curve
    from ._generalization import optimal_stopping_time as optimal_stopping_time
    from ._generalization import sample_generalization_curve as sample_generalization_curve
    from ._init import SCHEMES as SCHEMES
    from ._init import init_weights as init_weights
    from ._kernels import ntk as ntk
    from ._kernels import predict as predict
    from ._kernels import representational_similarity as representational_similarity
    from ._loss import gradients as gradients
    from ._loss import loss as loss
    from ._loss import product as product
    from ._modes import energy as energy
    from ._modes import from_modes as from_modes
    from ._modes import mode_bases as mode_bases
    from ._modes import mode_equations as mode_equations
    from ._modes import mode_flow as mode_flow
    from ._modes import mode_task as mode_task
    from ._modes import mode_vectors as mode_vectors
    from ._modes import to_modes as to_modes
    from ._nonlinear.langevin import langevin_descent as langevin_descent
    from ._nonlinear.langevin import langevin_flow as langevin_flow
    from ._nonlinear.langevin import two_phase as two_phase
    from ._nonlinear.norm_adaptive import norm_adaptive as norm_adaptive
    from ._nonlinear.relu import ReLUNetwork as ReLUNetwork
    from ._nonlinear.relu import TeacherStudent as TeacherStudent
    from ._nonlinear.relu import measure as measure
    from ._nonlinear.relu import measure_distance as measure_distance
    from ._nonlinear.relu import ntk_gram as ntk_gram
    from ._nonlinear.relu import relu_network as relu_network
    from ._nonlinear.relu import teacher_student as teacher_student
    from ._nonlinear.relu import uniform_sphere as uniform_sphere
    from ._objective import Objective as Objective
    from ._phase import FIXED_POINT_KINDS as FIXED_POINT_KINDS
    from ._phase import FixedPoint as FixedPoint
    from ._phase import fixed_points as fixed_points
    from ._phase import scalar_pair as scalar_pair
    from ._saddle import saddle_to_saddle as saddle_to_saddle
    from ._sharpness import sharpness as sharpness
    from ._sweep import load_config as load_config
    from ._sweep import load_sweep as load_sweep
    from ._sweep import run_sweep as run_sweep
    from ._task import Task as Task
    from ._trajectory import Trajectory as Trajectory


def _lazy_names() -> dict[str, tuple[str, str | None]]:
    """Public name -> (module, attribute or None for a submodule), read off the block above."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If))
    names = {}
    for node in block.body:
        for alias in node.names:
            if node.module is None:  # `from . import plot as plot`
                names[alias.asname] = ("." + alias.name, None)
            else:
                names[alias.asname] = ("." * node.level + node.module, alias.name)
    return names


_LAZY = _lazy_names()
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'linflow' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = _import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return ["__version__", *__all__]
