"""linflow: learning dynamics of (deep linear) neural networks in JAX."""

import importlib.metadata

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
from ._nonlinear.relu import relative_movement as relative_movement
from ._nonlinear.relu import relu_network as relu_network
from ._nonlinear.relu import teacher_student as teacher_student
from ._nonlinear.relu import uniform_sphere as uniform_sphere
from ._objective import Objective as Objective
from ._phase import FIXED_POINT_KINDS as FIXED_POINT_KINDS
from ._phase import FixedPoint as FixedPoint
from ._phase import fixed_points as fixed_points
from ._phase import scalar_pair as scalar_pair
from ._task import Task as Task
from ._trajectory import Trajectory as Trajectory

__version__ = importlib.metadata.version("linflow")
