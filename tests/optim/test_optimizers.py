"""``sg.optim``'s optimizer objects follow ``torch.optim`` step for step: every configuration
below trains its own copy of a small least-squares model inside one compiled function (per
backend and dtype), and its trajectory must equal PyTorch's in the same dtype, to rounding.
Also: the state, the API forms and the errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import staticgrad as sg

STEPS = 6
LRS = [0.05, 0.02, 0.08, 0.01, 0.03, 0.05]        # fed to the placeholder / parameter lrs


@dataclass
class Config:
    make: Callable            # lrs -> staticgrad optimizer (lrs: {"feed": ..., "parameter": ...})
    torch: Callable           # (params, torch) -> torch optimizer
    clip: tuple | None = None          # (max_norm, norm_type): clip_grad_norm_ before the step
    own_grads: bool = False   # staticgrad: clip the gradient nodes here, give updates(grads=)
    scheduler: Callable | None = None  # (torch optimizer, torch) -> torch lr scheduler
    lr: str | None = None     # the lr is LRS[k] at step k: fed ("feed") or set ("parameter")


def sequential(opt, torch):
    lr_scheduler = torch.optim.lr_scheduler
    return lr_scheduler.SequentialLR(
        opt, [lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=2),
              lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)], milestones=[2])


def same(name: str, **settings) -> Config:
    """The optimizer ``name`` with the same settings in both libraries."""
    return Config(lambda lr: getattr(sg.optim, name)(**settings),
                  lambda ps, torch: getattr(torch.optim, name)(ps, **settings))


CONFIGS = {
    "sgd": same("SGD", lr=0.05),
    "sgd-momentum-decay": same("SGD", lr=0.05, momentum=0.9, weight_decay=0.01),
    "sgd-dampening": same("SGD", lr=0.05, momentum=0.9, dampening=0.3),
    "sgd-nesterov": same("SGD", lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
    "adam": same("Adam", lr=0.05),
    "adam-decay-amsgrad": same("Adam", lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05,
                               amsgrad=True),
    "adamw": same("AdamW", lr=0.05, weight_decay=0.1),
    "adamw-amsgrad": same("AdamW", lr=0.03, amsgrad=True),
    "rmsprop": same("RMSprop", lr=0.01),
    "rmsprop-momentum": same("RMSprop", lr=0.01, momentum=0.9, weight_decay=0.01),
    "rmsprop-centered": same("RMSprop", lr=0.01, alpha=0.9, eps=1e-6, momentum=0.5,
                             centered=True),
    "adam-clip": Config(lambda lr: sg.optim.Adam(lr=0.05, max_grad_norm=0.5),
                        lambda ps, torch: torch.optim.Adam(ps, lr=0.05), clip=(0.5, 2.0)),
    "sgd-clip-inf": Config(lambda lr: sg.optim.SGD(lr=0.1, momentum=0.5),
                           lambda ps, torch: torch.optim.SGD(ps, lr=0.1, momentum=0.5),
                           clip=(0.3, math.inf), own_grads=True),
    "adam-cosine": Config(
        lambda lr: sg.optim.Adam(lr=sg.optim.cosine_lr(0.05, total_steps=5, min_lr=0.001)),
        lambda ps, torch: torch.optim.Adam(ps, lr=0.05),
        scheduler=lambda opt, torch: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=5, eta_min=0.001)),
    "sgd-warmup-step": Config(
        lambda lr: sg.optim.SGD(lr=sg.optim.linear_warmup(
            sg.optim.step_lr(0.05, step_size=2, gamma=0.5), warmup_steps=2, start_factor=0.25),
            momentum=0.9),
        lambda ps, torch: torch.optim.SGD(ps, lr=0.05, momentum=0.9), scheduler=sequential),
    "adam-lr-placeholder": Config(lambda lr: sg.optim.Adam(lr=lr["feed"]),
                                  lambda ps, torch: torch.optim.Adam(ps, lr=LRS[0]), lr="feed"),
    "rmsprop-lr-parameter": Config(
        lambda lr: sg.optim.RMSprop(lr=lr["parameter"], centered=True),
        lambda ps, torch: torch.optim.RMSprop(ps, lr=LRS[0], centered=True), lr="parameter"),
}


def problem(dtype):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((8, 3)).astype(dtype)
    Y = rng.standard_normal((8, 2)).astype(dtype)
    return X, Y, rng.standard_normal((3, 2)).astype(dtype), rng.standard_normal(2).astype(dtype)


def build(backend, dtype):
    """One function training a copy of (W, b) per configuration; the trajectories."""
    X, Y, W0, b0 = problem(dtype)
    x = sg.placeholder(X.shape, dtype, name="X")
    y = sg.placeholder(Y.shape, dtype, name="Y")
    lr = {"feed": sg.placeholder((), dtype, name="lr"),
          "parameter": sg.parameter(np.array(LRS[0], dtype), name="lr")}
    updates, params, total, optimizers = [], {}, 0.0, {}
    for name, config in CONFIGS.items():
        W = sg.parameter(W0, name=f"{name}.W")
        b = sg.parameter(b0, name=f"{name}.b")
        loss = sg.mean((x @ W + b - y) ** 2)
        opt = optimizers[name] = config.make(lr)
        if config.own_grads:
            clipped, _ = sg.optim.clip_grad_norm(sg.grad(loss, [W, b]), *config.clip)
            updates += opt.updates(params=[W, b], grads=clipped)
        else:
            updates += opt.updates(loss, [W, b])
        params[name] = (W, b)
        total = total + loss
    step = sg.function([x, y, lr["feed"]], total, updates=updates, backend=backend)
    history = {name: [] for name in CONFIGS}
    for k in range(STEPS):
        lr["parameter"].value = np.array(LRS[k], dtype)
        step(X, Y, np.array(LRS[k], dtype))
        for name, (W, b) in params.items():
            history[name].append((W.value.copy(), b.value.copy()))
    return history, params, optimizers


def torch_history(name, dtype):
    torch = pytest.importorskip("torch")
    config = CONFIGS[name]
    X, Y, W0, b0 = (torch.tensor(a) for a in problem(dtype))
    W, b = torch.nn.Parameter(W0), torch.nn.Parameter(b0)
    opt = config.torch([W, b], torch)
    scheduler = config.scheduler(opt, torch) if config.scheduler else None
    history = []
    for k in range(STEPS):
        if config.lr:
            opt.param_groups[0]["lr"] = LRS[k]
        opt.zero_grad()
        torch.mean((X @ W + b - Y) ** 2).backward()
        if config.clip:
            torch.nn.utils.clip_grad_norm_([W, b], *config.clip)
        opt.step()
        if scheduler is not None:
            scheduler.step()
        history.append((W.detach().numpy().copy(), b.detach().numpy().copy()))
    return history


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def trained(request, backend, compile_once):
    dtype = np.dtype(request.param)
    return dtype, compile_once(("trained", backend, dtype), lambda: build(backend, dtype))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_trajectory_matches_torch(name, trained):
    dtype, (history, _, _) = trained
    expected = torch_history(name, dtype)
    rtol, atol = (2e-5, 2e-6) if dtype == np.float32 else (1e-12, 1e-14)
    for k, (got, want) in enumerate(zip(history[name], expected)):
        for g, w in zip(got, want):
            assert g.dtype == dtype
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{name}, step {k}")


def test_the_trajectories_move(trained):
    """A test of nothing is no test: every configuration changes its parameters each step."""
    _, (history, _, _) = trained
    for name, steps in history.items():
        for before, after in zip(steps, steps[1:]):
            assert not np.array_equal(before[0], after[0]), name


def test_state_is_inspectable(trained):
    dtype, (_, params, optimizers) = trained
    W, b = params["adam-decay-amsgrad"]
    state = optimizers["adam-decay-amsgrad"].state
    assert list(state) == [W, b]
    assert sorted(state[W]) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
    assert state[W]["exp_avg"].name == "adam-decay-amsgrad.W.exp_avg"
    assert state[W]["exp_avg"].value.shape == (3, 2) and state[W]["exp_avg"].dtype == dtype
    assert float(state[W]["step"].value) == STEPS == float(state[b]["step"].value)
    W, _ = params["rmsprop-centered"]
    assert sorted(optimizers["rmsprop-centered"].state[W]) == \
        ["grad_avg", "momentum_buffer", "square_avg", "step"]
    W, _ = params["sgd"]
    assert sorted(optimizers["sgd"].state[W]) == ["step"]


def test_forms_of_the_api_give_the_same_updates():
    """PyTorch's ``Adam(params, lr)`` with ``updates(loss)``, parameters given later, a model
    object, and precomputed gradients all describe the same step."""
    model = {"w": sg.parameter(np.array([1.0, -2.0]), name="w")}
    w = model["w"]
    loss = sg.sum(w * w * w)
    forms = [sg.optim.Adam([w], 0.1).updates(loss), sg.optim.Adam(lr=0.1).updates(loss, [w]),
             sg.optim.Adam(lr=0.1).updates(loss, model),
             sg.optim.Adam(lr=0.1).updates(params=w, grads=sg.grad(loss, w))]
    values = []
    for updates in forms:
        step = sg.function([], loss, updates=updates, backend="numpy")
        w.value = np.array([1.0, -2.0])
        step()
        values.append(w.value.copy())
    assert all(np.array_equal(v, values[0]) for v in values)
    assert np.allclose(values[0], [0.9, -2.1])


def test_one_optimizer_reuses_its_state_across_functions():
    """Two functions built from one optimizer (say, two batch shapes) share its state."""
    w = sg.parameter(np.array([1.0]), name="w")
    x = sg.placeholder((None,), name="x")
    loss = sg.sum((w - x) ** 2)
    opt = sg.optim.SGD(lr=0.1, momentum=0.9)
    first = sg.function([x], loss, updates=opt.updates(loss, [w]), backend="numpy")
    second = sg.function([x], loss, updates=opt.updates(loss, [w]), backend="numpy")
    first(np.zeros(2))
    second(np.zeros(3))
    assert len(opt.state) == 1 and float(opt.state[w]["step"].value) == 2.0


def test_repr_names_the_hyperparameters():
    assert repr(sg.optim.Adam(lr=0.1, max_grad_norm=1.0)) == \
        "Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0, amsgrad=False, " \
        "max_grad_norm=1.0)"


@pytest.mark.parametrize("make, message", [
    (lambda: sg.optim.SGD(lr=-1.0), "invalid learning rate"),
    (lambda: sg.optim.SGD(lr=0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda: sg.optim.Adam(lr=0.1, betas=(1.0, 0.9)), "invalid beta1"),
    (lambda: sg.optim.RMSprop(lr=0.1, momentum=-0.5), "invalid momentum"),
    (lambda: sg.optim.Adam(lr=sg.placeholder((2,), name="lr")), "0-d float"),
    (lambda: sg.optim.Adam(1e-3), "optimizers update parameters .* found none in 0.001"),
    (lambda: sg.optim.SGD([sg.placeholder((2,), name="x")], lr=0.1),
     "optimizers update parameters"),
    (lambda: sg.optim.SGD([sg.parameter(np.arange(3))], lr=0.1), "floating-point"),
    (lambda: sg.optim.SGD(lr=0.1).updates(sg.constant(1.0)), "which parameters"),
    (lambda: sg.optim.SGD(lr=0.1).updates(params=[sg.parameter(1.0)]), "needs the loss"),
    (lambda: sg.optim.SGD(lr=0.1).updates(params=[sg.parameter(1.0)],
                                          grads=[sg.constant(1.0)] * 2), "2 gradients for 1"),
    (lambda: sg.optim.clip_grad_norm([sg.constant(1.0)], 1.0, norm_type=3), "norm_type"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()
