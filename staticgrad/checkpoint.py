"""Checkpoints: parameter values and optimizer state in one ``.npz`` file.

Parameters are stored under their paths (``sg.named_parameters``: ``"layers.0.w"``), an
optimizer's state under ``"optimizer/<path>/<name>"`` (``"optimizer/layers.0.w/exp_avg"``)
with its class in ``"optimizer/type"``. Everything that decides the next step lives in
parameters (the step counts too), so a run reloaded into fresh objects continues bit for bit.
Loading checks the whole file first (names, shapes, dtypes) and writes nothing unless all of
it matches.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import dtypes as dt
from .module import named_parameters

__all__ = ["save_checkpoint", "load_checkpoint"]

OPTIMIZER = "optimizer/"


def named(params) -> dict:
    """``{path: parameter}`` of a dict, list or model object; a flat list is named by index."""
    found = named_parameters(params)
    if not found:
        raise TypeError(f"found no parameters in {type(params).__name__} object")
    return found


def optimizer_entries(optimizer, params: dict, in_file=frozenset()) -> dict:
    """``{key: state parameter}`` for each parameter the optimizer keeps state for, or that
    the file has state for (made now, as the optimizer's first step would)."""
    paths = {id(p): path for path, p in params.items()}
    strays = [p.name or "?" for p in optimizer.state if id(p) not in paths]
    if strays:
        raise ValueError(f"the optimizer keeps state for parameters that are not being saved "
                         f"or loaded: {', '.join(map(repr, strays))}")
    entries = {f"{OPTIMIZER}type": None}
    for path, p in params.items():
        if p in optimizer.state or any(k.startswith(f"{OPTIMIZER}{path}/") for k in in_file):
            for slot, holder in optimizer.state_of(p, path).items():
                entries[f"{OPTIMIZER}{path}/{slot}"] = holder
    return entries


def save_checkpoint(path, params, optimizer=None) -> str:
    """Write the values of ``params`` (a model object, a dict or a list of parameters) and,
    if given, ``optimizer``'s state to ``path`` (``.npz`` is appended if missing). The file
    is written whole and then moved into place, so a crash never leaves half a checkpoint.
    Returns the path written.

    >>> import numpy as np, staticgrad as sg, tempfile, os
    >>> w = sg.parameter(np.arange(3.0), name="w")
    >>> opt = sg.optim.Adam([w], lr=0.1)
    >>> step = sg.function([], sg.sum(w * w), updates=opt.updates(sg.sum(w * w)),
    ...                    backend="numpy")
    >>> _ = step()
    >>> path = sg.save_checkpoint(os.path.join(tempfile.mkdtemp(), "ckpt"), {"w": w}, opt)
    >>> sorted(np.load(path))
    ['optimizer/type', 'optimizer/w/exp_avg', 'optimizer/w/exp_avg_sq', 'optimizer/w/step', 'w']
    """
    params = named(params)
    holders = dict(params)
    if optimizer is not None:
        holders.update(optimizer_entries(optimizer, params))
    arrays = {}
    for key, holder in holders.items():
        if holder is None:
            arrays[key] = np.array(type(optimizer).__name__)
            continue
        with holder.lock:          # not halfway through another thread's update
            arrays[key] = holder.value.copy()
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    partial = f"{path}.partial"
    with open(partial, "wb") as file:
        np.savez(file, **arrays)
    os.replace(partial, path)
    return path


def load_checkpoint(path, params, optimizer=None) -> None:
    """Set ``params`` (and ``optimizer``'s state, when given) from a file ``save_checkpoint`` wrote.
    Every name, shape and dtype must match (optimizer entries are ignored when no optimizer
    is given); otherwise ``ValueError`` lists each difference and nothing is written.

    >>> import numpy as np, staticgrad as sg, tempfile, os
    >>> where = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> path = sg.save_checkpoint(where, [sg.parameter(np.ones(2))])
    >>> w = sg.parameter(np.zeros(2))
    >>> sg.load_checkpoint(path, [w]); w.value.tolist()
    [1.0, 1.0]
    >>> sg.load_checkpoint(path, [sg.parameter(np.zeros(3))])
    Traceback (most recent call last):
    ValueError: load ...w.npz: the file does not match: '0' has shape (2,) in the file, (3,) here
    """
    params = named(params)
    with np.load(Path(path), allow_pickle=False) as file:
        stored = {key: file[key] for key in file.files}
    expected = dict(params)
    if optimizer is not None:
        expected.update(optimizer_entries(optimizer, params, set(stored)))
    else:
        stored = {k: v for k, v in stored.items() if not k.startswith(OPTIMIZER)}
    problems = [f"{key!r} is missing from the file" for key in expected if key not in stored]
    problems += [f"{key!r} is in the file but not here" for key in stored if key not in expected]
    for key, holder in expected.items():
        if key not in stored:
            continue
        value = stored[key]
        if holder is None:
            if str(value) != type(optimizer).__name__:
                problems.append(f"the file holds the state of {str(value)}, not of "
                                f"{type(optimizer).__name__}")
        elif value.shape != holder.value.shape:
            problems.append(f"{key!r} has shape {value.shape} in the file, "
                            f"{holder.value.shape} here")
        elif value.dtype != holder.dtype:
            problems.append(f"{key!r} is {dt.short(value.dtype)} in the file, "
                            f"{dt.short(holder.dtype)} here")
    if problems:
        raise ValueError(f"load {path}: the file does not match: {'; '.join(problems)}")
    for key, holder in expected.items():
        if holder is not None:
            with holder.lock:
                np.copyto(holder.value, stored[key])
