"""linflow: learning dynamics of (deep linear) neural networks in JAX."""

import importlib.metadata

from . import plot as plot
from . import tasks as tasks
from ._descent import gradient_descent as gradient_descent
from ._exact import CLOSED_FORMS as CLOSED_FORMS
from ._exact import ClosedForm as ClosedForm
from ._exact import deep_mode as deep_mode
from ._exact import exact_flow as exact_flow
from ._exact import saxe_deep as saxe_deep
from ._exact import scalar_mode as scalar_mode
from ._exact import shallow as shallow
from ._exact import time_to_learn as time_to_learn
from ._flow import gradient_flow as gradient_flow
from ._init import SCHEMES as SCHEMES
from ._init import init_weights as init_weights
from ._kernels import ntk as ntk
from ._kernels import predict as predict
from ._kernels import representational_similarity as representational_similarity
from ._loss import gradients as gradients
from ._loss import loss as loss
from ._loss import product as product
from ._task import Task as Task
from ._trajectory import Trajectory as Trajectory

__version__ = importlib.metadata.version("linflow")
