"""staticgrad: define-then-run automatic differentiation for NumPy, compiled with Numba.

Build a graph of placeholders, parameters and ops; ask ``grad`` for gradient nodes; compile
forward and backward together with ``function``. The pipeline, one module per stage:

    tensor/ops -> autodiff -> rewrite -> schedule -> codegen -> function (run)
                                  \\-> reference (the NumPy oracle)      graph (inspect any stage)
"""

from . import optim
from .autodiff import grad
from .debug import AnomalyError, GradcheckError, detect_anomaly, gradcheck, gradgradcheck
from .function import Function, function
from .graph import Graph, graph
from .ops import *  # noqa: F401,F403  (the NumPy-named op functions)
from .ops import REGISTRY, CustomFunction, OpDef, cast, custom_vjp
from .tensor import Constant, GradFn, Parameter, Tensor, constant, parameter, placeholder

__version__ = "0.1.0"

__all__ = ["grad", "function", "Function", "graph", "Graph", "Tensor", "Parameter",
           "Constant", "GradFn", "placeholder", "parameter", "constant", "cast", "REGISTRY",
           "OpDef", "detect_anomaly", "gradcheck", "gradgradcheck", "AnomalyError",
           "GradcheckError", "custom_vjp", "CustomFunction", "optim"]
