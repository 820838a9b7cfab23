"""Collect a model's parameters from plain Python objects, named by where they sit.

A model is whatever holds its parameters: attributes, lists, tuples and dicts, nested as deep
as you like. ``named_parameters`` walks it and names each parameter by its path
(``"layers.0.w"``), as ``torch.nn.Module.named_parameters`` does; optimizers,
``sg.save_checkpoint`` and ``sg.load_checkpoint`` take such an object, a dict of parameters or a
list. ``Module`` is an optional base class that only adds the two methods and
``__call__ -> forward``.
"""

from __future__ import annotations

import types

from .tensor import Parameter, Tensor

__all__ = ["Module", "named_parameters"]


def named_parameters(obj, prefix: str = "") -> dict:
    """``{path: parameter}`` for every parameter reachable from ``obj`` through attributes,
    list and tuple items (named by index) and dict values (named by key), in the order they
    are found; a parameter reached twice keeps its first path. Tensors that are not
    parameters (placeholders) and staticgrad's own objects (functions, optimizers) are not
    entered.

    >>> import numpy as np, staticgrad as sg
    >>> from types import SimpleNamespace as Layer     # any object with attributes
    >>> def layer(n):
    ...     return Layer(w=sg.parameter(np.zeros((n, n))), b=sg.parameter(np.zeros(n)))
    >>> model = {"layers": [layer(2), layer(3)], "scale": sg.parameter(1.0)}
    >>> list(sg.named_parameters(model))
    ['layers.0.w', 'layers.0.b', 'layers.1.w', 'layers.1.b', 'scale']
    """
    found: dict = {}
    seen: set = set()
    walk(obj, prefix, found, seen)
    return found


def walk(obj, path: str, found: dict, seen: set) -> None:
    if isinstance(obj, Parameter):
        if id(obj) not in seen:
            seen.add(id(obj))
            found[path or (obj.name or "param")] = obj
        return
    if id(obj) in seen or not enters(obj):
        return
    seen.add(id(obj))
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        items = vars(obj).items()
    for key, value in items:
        walk(value, f"{path}.{key}" if path else str(key), found, seen)


def enters(obj) -> bool:
    """Containers and user objects hold parameters; staticgrad's own objects (a compiled
    function's updates, an optimizer's state) and modules, classes and functions do not."""
    if isinstance(obj, (dict, list, tuple)):
        return True
    if isinstance(obj, (Tensor, type, types.ModuleType, types.FunctionType, types.MethodType)):
        return False
    if not hasattr(obj, "__dict__"):
        return False
    module = type(obj).__module__ or ""
    return isinstance(obj, Module) or not module.split(".")[0] == "staticgrad"


class Module:
    """An optional base class for models: ``parameters()``, ``named_parameters()`` and
    ``model(*args)`` calling ``model.forward(*args)``. Nothing else; any object works with
    ``sg.named_parameters``.

    >>> import numpy as np, staticgrad as sg
    >>> class Linear(sg.Module):
    ...     def __init__(self, n_in, n_out, rng):
    ...         self.w = sg.parameter(sg.init.xavier_uniform((n_in, n_out), rng), name="w")
    ...         self.b = sg.parameter(np.zeros(n_out, np.float32), name="b")
    ...     def forward(self, x):
    ...         return x @ self.w + self.b
    >>> layer = Linear(3, 2, np.random.default_rng(0))
    >>> [name for name in layer.named_parameters()], layer(sg.placeholder((None, 3))).shape
    (['w', 'b'], (None, 2))
    """

    def named_parameters(self, prefix: str = "") -> dict:
        return named_parameters(self, prefix)

    def parameters(self) -> list:
        return list(named_parameters(self).values())

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)
