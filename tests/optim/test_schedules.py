"""Learning-rate schedules: in Python they give PyTorch's schedulers' learning rates; in a graph
(on a step-count tensor, both backends) they give the same numbers as in Python."""

from __future__ import annotations

import numpy as np
import pytest

import staticgrad as sg

STEPS = 30
SCHEDULES = {
    "step": (sg.optim.step_lr(0.1, step_size=7, gamma=0.5),
             lambda opt, s: s.StepLR(opt, step_size=7, gamma=0.5)),
    "cosine": (sg.optim.cosine_lr(0.1, total_steps=STEPS, min_lr=0.002),
               lambda opt, s: s.CosineAnnealingLR(opt, T_max=STEPS, eta_min=0.002)),
    "warmup-cosine": (
        sg.optim.linear_warmup(sg.optim.cosine_lr(0.1, total_steps=STEPS - 5), warmup_steps=5,
                               start_factor=0.2),
        lambda opt, s: s.SequentialLR(opt, [s.LinearLR(opt, start_factor=0.2, total_iters=5),
                                            s.CosineAnnealingLR(opt, T_max=STEPS - 5)],
                                      milestones=[5])),
    "warmup-constant": (sg.optim.linear_warmup(0.1, warmup_steps=4, start_factor=0.5),
                        lambda opt, s: s.LinearLR(opt, start_factor=0.5, total_iters=4)),
}


def torch_lrs(make) -> list:
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = make(opt, torch.optim.lr_scheduler)
    lrs = []
    for _ in range(STEPS + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_python_values_match_torch(name):
    schedule, make = SCHEDULES[name]
    np.testing.assert_allclose([schedule(t) for t in range(STEPS + 1)], torch_lrs(make),
                               rtol=1e-12, atol=1e-15)


def test_graph_values_match_python(backend):
    t = sg.placeholder((), name="t")
    f = sg.function([t], [schedule(t) for schedule, _ in SCHEDULES.values()], backend=backend)
    for step in [*range(STEPS + 1), 100]:
        got = f(np.array(float(step)))
        want = [schedule(step) for schedule, _ in SCHEDULES.values()]
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-16, err_msg=f"t={step}")


def test_schedules_hold_their_last_value():
    assert sg.optim.cosine_lr(1.0, 10, min_lr=0.1)(50) == pytest.approx(0.1)
    assert sg.optim.linear_warmup(0.3, 3)(50) == pytest.approx(0.3)
    assert repr(sg.optim.step_lr(0.1, 3)) == "step_lr(lr=0.1, step_size=3, gamma=0.1)"


@pytest.mark.parametrize("make, message", [
    (lambda: sg.optim.step_lr(0.1, step_size=0), "step_size"),
    (lambda: sg.optim.cosine_lr(0.1, total_steps=0), "total_steps"),
    (lambda: sg.optim.linear_warmup(0.1, warmup_steps=0), "warmup_steps"),
    (lambda: sg.optim.linear_warmup(0.1, warmup_steps=3, start_factor=0.0), "start_factor"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
