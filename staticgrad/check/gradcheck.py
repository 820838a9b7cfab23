"""Gradient checks: symbolic gradients against central differences, in float64.

``gradcheck`` compares the Jacobian of outputs with respect to inputs; ``gradgradcheck`` does
the same for first-order gradients, which checks second derivatives. Both run on the NumPy
reference, like PyTorch's ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import dtypes as dt
from ..autodiff import grad
from ..function import function
from ..graph import typed
from ..ops import apply
from ..tensor import Tensor, as_tensor, constant, derived_from, placeholder, toposort
from .anomaly import where


class GradcheckError(AssertionError):
    """``gradcheck``/``gradgradcheck`` found a gradient that disagrees with finite differences."""



def gradcheck(outputs, inputs, values, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Compare the symbolic Jacobian of ``outputs`` with respect to ``inputs`` (placeholders or
    parameters) at ``values`` with central differences, both in float64 on the NumPy reference,
    like PyTorch's ``gradcheck``. Returns True, or raises ``GradcheckError`` describing the
    worst element (False instead with ``raise_exception=False``).

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((3,), np.float32, name="x")
    >>> sg.gradcheck(sg.sin(x) * x, x, np.array([0.5, 1.0, 2.0]))
    True
    """
    problem = Problem(outputs, inputs, values)
    return problem.check(problem.outputs, "gradcheck", "output", eps, atol, rtol,
                         raise_exception)


def gradgradcheck(outputs, inputs, values, grad_outputs=None, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True,
                  seed: int = 0) -> bool:
    """``gradcheck`` of the first-order gradients ``grad(outputs, inputs, v)`` (``v``:
    ``grad_outputs``, random normal by default), which checks the second derivatives.

    >>> import numpy as np, staticgrad as sg
    >>> x = sg.placeholder((3,), name="x")
    >>> sg.gradgradcheck(sg.exp(x) * x, x, np.array([0.5, 1.0, 2.0]))
    True
    """
    problem = Problem(outputs, inputs, values)
    ys = problem.forward(problem.outputs)(*problem.values)
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = [rng.standard_normal(np.shape(y)) for y in ys]
    elif not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    cotangents = [placeholder(o.dims, np.float64, name=f"v{k}")
                  for k, o in enumerate(problem.outputs)]
    firsts = grad(problem.outputs, [problem.inputs[k] for k in problem.wrt],
                  grad_outputs=cotangents)
    fixed = list(zip(cotangents, [np.asarray(v, np.float64) for v in grad_outputs]))
    return problem.check(list(firsts), "gradgradcheck", "first-order gradient", eps, atol,
                         rtol, raise_exception, fixed)


class Problem:
    """The graph of ``outputs`` rebuilt in float64 on fresh placeholders for ``inputs``."""

    def __init__(self, outputs, inputs, values):
        self.single = isinstance(inputs, Tensor)
        originals = [inputs] if self.single else list(inputs)
        values = [values] if self.single else list(values)
        if len(values) != len(originals):
            raise ValueError(f"gradcheck: {len(values)} values for {len(originals)} inputs")
        outs = [outputs] if not isinstance(outputs, (list, tuple)) else list(outputs)
        outs = [as_tensor(o) for o in outs]
        for k, x in enumerate(originals):
            if not isinstance(x, Tensor) or x.leaf not in ("placeholder", "parameter"):
                raise TypeError(f"gradcheck: input {k} must be a placeholder or a parameter, "
                                f"got {x!r}")
        for k, o in enumerate(outs):
            if not dt.is_float(o.dtype):
                raise TypeError(f"gradcheck: output {k} ({typed(o)}, built at {where(o)}) is "
                                "not floating-point, so it has no gradient")
        self.originals = originals
        self.inputs = [placeholder(x.dims, wide(x.dtype), name=x.name) for x in originals]
        self.values = [np.array(v, dtype=wide(x.dtype)) for v, x in zip(values, originals)]
        self.wrt = [k for k, x in enumerate(originals) if dt.is_float(x.dtype)]
        self.outputs = widen(outs, dict(zip(map(id, originals), self.inputs)))

    def forward(self, outputs: list, fixed: Sequence = ()):
        return function(self.inputs + [p for p, _ in fixed], outputs, backend="numpy")

    def check(self, outputs: list, what: str, noun: str, eps: float, atol: float, rtol: float,
              raise_exception: bool, fixed: Sequence = ()) -> bool:
        analytic = self.analytic(outputs, fixed)
        numeric = self.numeric(outputs, fixed, eps)
        worst, failures, total = None, 0, 0
        for (k, j), a in analytic.items():
            n = numeric[k, j]
            excess = np.abs(a - n) / (atol + rtol * np.abs(n))
            failures += int((excess > 1).sum())
            total += excess.size
            if excess.size and (worst is None or excess.max() > worst[0]):
                e = np.unravel_index(int(np.argmax(excess)), excess.shape)
                worst = (float(excess.max()), k, j, e, float(a[e]), float(n[e]))
        if not failures:
            return True
        if not raise_exception:
            return False
        _, k, j, (e_out, e_in), a, n = worst
        out, x = outputs[k], self.originals[self.wrt[j]]
        out_index = np.unravel_index(e_out, self.shapes[k]) if self.shapes[k] else ()
        in_index = np.unravel_index(e_in, x.shape and self.values[self.wrt[j]].shape) \
            if self.values[self.wrt[j]].ndim else ()
        name = x.name or f"input {self.wrt[j]}"
        raise GradcheckError(
            f"{what}: the Jacobian of {noun} {k} ({typed(out)}, built at {where(out)}) with "
            f"respect to {name!r} ({typed(x)}) disagrees with finite differences in {failures} "
            f"of {total} entries. Worst: d {noun} {k}{list(map(int, out_index))} / "
            f"d {name}{list(map(int, in_index))}: analytic {a!r}, numeric {n!r}, abs error "
            f"{abs(a - n):.3g}, rel error {abs(a - n) / max(abs(n), 1e-300):.3g} "
            f"(allowed: atol={atol:g} + rtol={rtol:g} * |numeric|, eps={eps:g})")

    def analytic(self, outputs: list, fixed: Sequence) -> dict:
        """``(output k, wrt j) -> d out_k / d in_j`` (rows: output elements), one vector-
        Jacobian product per output element with a one-hot cotangent."""
        fixed_values = [v for _, v in fixed]
        ys = self.forward(outputs, fixed)(*self.values, *fixed_values)
        self.shapes = [np.shape(y) for y in ys]
        wrt = [self.inputs[j] for j in self.wrt]
        vs = [placeholder(o.dims, np.float64, name=f"cotangent{k}") for k, o in enumerate(outputs)]
        vjp = function(self.inputs + [p for p, _ in fixed] + vs,
                       list(grad(outputs, wrt, grad_outputs=vs)), backend="numpy")
        zeros = [np.zeros(s) for s in self.shapes]
        jac = {(k, j): np.zeros((int(np.prod(self.shapes[k])), self.values[w].size))
               for k in range(len(outputs)) for j, w in enumerate(self.wrt)}
        for k in range(len(outputs)):
            for e in range(int(np.prod(self.shapes[k]))):
                seeds = [z.copy() for z in zeros]
                seeds[k].reshape(-1)[e] = 1.0
                for j, g in enumerate(vjp(*self.values, *fixed_values, *seeds)):
                    jac[k, j][e] = np.ravel(g)
        return jac

    def numeric(self, outputs: list, fixed: Sequence, eps: float) -> dict:
        """The same Jacobians by central differences (columns: input elements)."""
        f = self.forward(outputs, fixed)
        fixed_values = [v for _, v in fixed]
        jac = {(k, j): np.zeros((int(np.prod(self.shapes[k])), self.values[w].size))
               for k in range(len(outputs)) for j, w in enumerate(self.wrt)}
        for j, w in enumerate(self.wrt):
            flat = self.values[w].reshape(-1)
            for i in range(flat.size):
                old = flat[i]
                flat[i] = old + eps
                hi = f(*self.values, *fixed_values)
                flat[i] = old - eps
                lo = f(*self.values, *fixed_values)
                flat[i] = old
                for k in range(len(outputs)):
                    jac[k, j][:, i] = (np.ravel(hi[k]) - np.ravel(lo[k])) / (2 * eps)
        return jac


def wide(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dt.is_float(dtype) else np.dtype(dtype)


def widen(outputs: Sequence[Tensor], replace: dict) -> list:
    """``outputs`` rebuilt with float64 wherever they had a narrower float: ``replace`` maps
    ids of leaves to their stand-ins; other parameters become float64 constants of their
    current values. Rebuilt nodes keep their user lines and backward origins."""
    done: dict = dict(replace)
    for n in toposort(outputs):
        if id(n) in done:
            continue
        if n.leaf == "placeholder":
            raise ValueError(f"gradcheck: the outputs depend on placeholder {n.name!r} (built "
                             f"at {where(n)}), which is not among the inputs")
        if n.leaf is not None:
            keep = n.leaf == "constant" and n.dtype == wide(n.dtype)
            done[id(n)] = n if keep else constant(np.asarray(n.value, wide(n.dtype)))
            continue
        attrs = {k: wide(v) if isinstance(v, np.dtype) else v for k, v in n.attrs}
        with derived_from(n):
            done[id(n)] = apply(n.op, [done[id(i)] for i in n.inputs], **attrs)
    return [done[id(o)] for o in outputs]
