"""staticgrad: define-then-run automatic differentiation for NumPy, compiled with Numba.

Build a graph of placeholders, parameters and ops; ask ``grad`` for gradient nodes; compile
forward and backward together with ``function``. The pipeline, one module per stage:

    tensor/ops -> autodiff -> rewrite -> schedule -> backends/numba (render, cache, runtime)
                                  \\-> backends/reference (the NumPy oracle)
    function composes it; inspect/ reads every stage; check/ checks them
"""

from . import init, optim
from .autodiff import grad
from .check.anomaly import AnomalyError, detect_anomaly
from .check.gradcheck import GradcheckError, gradcheck, gradgradcheck
from .checkpoint import load_checkpoint, save_checkpoint
from .export import load, save
from .function import Function, function
from .graph import Graph, graph
from .module import Module, named_parameters
from .ops import *  # noqa: F401,F403  (the NumPy-named op functions)
from .ops import REGISTRY, CustomFunction, OpDef, cast, custom_vjp
from .tensor import Constant, GradFn, Parameter, Tensor, constant, parameter, placeholder

__version__ = "0.1.0"

__all__ = ["grad", "function", "Function", "graph", "Graph", "Tensor", "Parameter",
           "Constant", "GradFn", "placeholder", "parameter", "constant", "cast", "REGISTRY",
           "OpDef", "detect_anomaly", "gradcheck", "gradgradcheck", "AnomalyError",
           "GradcheckError", "custom_vjp", "CustomFunction", "optim", "init", "Module",
           "named_parameters", "save", "load", "save_checkpoint", "load_checkpoint"]
