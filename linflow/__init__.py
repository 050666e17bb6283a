"""linflow: learning dynamics of (deep linear) neural networks in JAX."""

import importlib.metadata

from . import plot as plot
from . import tasks as tasks
from ._descent import gradient_descent as gradient_descent
from ._diagnostics import illusory_correlations as illusory_correlations
from ._diagnostics import learning_times as learning_times
from ._diagnostics import mode_alignment as mode_alignment
from ._diagnostics import neural_tangent_kernel as neural_tangent_kernel
from ._diagnostics import ntk_movement as ntk_movement
from ._diagnostics import representational_similarity as representational_similarity
from ._diagnostics import weight_movement as weight_movement
from ._exact import CLOSED_FORMS as CLOSED_FORMS
from ._exact import ClosedForm as ClosedForm
from ._exact import exact_flow as exact_flow
from ._exact import saxe_deep as saxe_deep
from ._exact import scalar_mode as scalar_mode
from ._exact import shallow as shallow
from ._exact import time_to_learn as time_to_learn
from ._flow import gradient_flow as gradient_flow
from ._init import SCHEMES as SCHEMES
from ._init import init_weights as init_weights
from ._loss import gradients as gradients
from ._loss import loss as loss
from ._loss import product as product
from ._sweep import load_config as load_config
from ._sweep import load_sweep as load_sweep
from ._sweep import run_sweep as run_sweep
from ._task import Task as Task
from ._trajectory import Trajectory as Trajectory

__version__ = importlib.metadata.version("linflow")
