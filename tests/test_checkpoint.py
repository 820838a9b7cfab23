"""``sg.save_checkpoint`` / ``sg.load_checkpoint``: a run reloaded into fresh objects continues
bit for bit, and a file that does not match is refused, naming every difference, with nothing
written."""

from __future__ import annotations

import numpy as np
import pytest

import staticgrad as sg

N, M = 4, 5      # steps before the checkpoint, steps after it


class MLP(sg.Module):
    def __init__(self, rng, dtype, sizes=(3, 8, 2)):
        self.layers = [{"w": sg.parameter(sg.init.kaiming_uniform((a, b), rng, dtype=dtype)),
                        "b": sg.parameter(np.zeros(b, dtype))}
                       for a, b in zip(sizes, sizes[1:])]

    def forward(self, x):
        for k, layer in enumerate(self.layers):
            x = x @ layer["w"] + layer["b"]
            x = sg.tanh(x) if k < len(self.layers) - 1 else x
        return x


OPTIMIZERS = {
    "adam-warmup-cosine-clip": lambda: sg.optim.Adam(
        lr=sg.optim.linear_warmup(sg.optim.cosine_lr(0.05, 20), warmup_steps=3),
        max_grad_norm=0.5),
    "sgd-nesterov": lambda: sg.optim.SGD(lr=0.05, momentum=0.9, nesterov=True,
                                         weight_decay=1e-3),
    "rmsprop-centered": lambda: sg.optim.RMSprop(lr=0.01, momentum=0.5, centered=True),
    "adamw-amsgrad": lambda: sg.optim.AdamW(lr=0.02, amsgrad=True),
}


def batch(k, dtype):
    """The data of step ``k``, the same in every run."""
    rng = np.random.default_rng(100 + k)
    return rng.standard_normal((16, 3)).astype(dtype), rng.standard_normal((16, 2)).astype(dtype)


def run(backend, dtype, optimizer, seed, load_from=None, load_first=False):
    """Fresh objects; optionally a checkpoint loaded (before or after the step is built)."""
    model, opt = MLP(np.random.default_rng(seed), dtype), OPTIMIZERS[optimizer]()
    if load_from and load_first:
        sg.load_checkpoint(load_from, model, opt)
    x = sg.placeholder((None, 3), dtype, name="x")
    y = sg.placeholder((None, 2), dtype, name="y")
    loss = sg.mean((model(x) - y) ** 2)
    step = sg.function([x, y], loss, updates=opt.updates(loss, model), backend=backend)
    if load_from and not load_first:
        sg.load_checkpoint(load_from, model, opt)
    return model, opt, step


def snapshot(model, opt) -> dict:
    values = {}
    for name, p in model.named_parameters().items():
        values[name] = p.value.copy()
        values.update({f"{name}/{slot}": h.value.copy() for slot, h in opt.state[p].items()})
    return values


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_a_reloaded_run_continues_bit_for_bit(backend, dtype, optimizer, tmp_path):
    model, opt, step = run(backend, dtype, optimizer, seed=0)
    for k in range(N):
        step(*batch(k, dtype))
    path = sg.save_checkpoint(tmp_path / "ckpt.npz", model, opt)
    losses_a = [step(*batch(k, dtype)) for k in range(N, N + M)]
    a = snapshot(model, opt)

    load_first = optimizer == "sgd-nesterov"      # state made by load, before the step
    model, opt, step = run(backend, dtype, optimizer, seed=1, load_from=path,
                           load_first=load_first)
    losses_b = [step(*batch(k, dtype)) for k in range(N, N + M)]
    b = snapshot(model, opt)

    assert list(a) == list(b) and len(a) >= 4 * 3
    assert opt.state[model.layers[1]["w"]]["step"].name == "layers.1.w.step"
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].tobytes() == b[name].tobytes(), name
    assert [v.tobytes() for v in losses_a] == [v.tobytes() for v in losses_b]
    assert float(opt.state[model.layers[0]["w"]]["step"].value) == N + M


@pytest.fixture
def saved(tmp_path):
    """A small model trained one Adam step and saved; the path and the values saved."""
    model = {"w": sg.parameter(np.arange(6.0).reshape(2, 3)), "b": sg.parameter(np.ones(3))}
    opt = sg.optim.Adam(lr=0.1)
    loss = sg.sum(model["w"] * model["b"])
    sg.function([], loss, updates=opt.updates(loss, model), backend="numpy")()
    path = sg.save_checkpoint(tmp_path / "ckpt", model, opt)
    values = {k: p.value.copy() for k, p in model.items()}
    values |= {f"{k}.{slot}": holder.value.copy() for k, p in model.items()
               for slot, holder in opt.state[p].items()}
    return path, values


def test_save_names_the_file_and_its_entries(saved):
    path, _ = saved
    assert path.endswith("ckpt.npz")
    with np.load(path) as file:
        assert sorted(file.files) == [
            "b", "optimizer/b/exp_avg", "optimizer/b/exp_avg_sq", "optimizer/b/step",
            "optimizer/type", "optimizer/w/exp_avg", "optimizer/w/exp_avg_sq",
            "optimizer/w/step", "w"]
        assert str(file["optimizer/type"]) == "Adam"
        assert float(file["optimizer/w/step"]) == 1.0


def fresh(w_shape=(2, 3), w_dtype=np.float64, extra=False):
    model = {"w": sg.parameter(np.full(w_shape, -1.0, w_dtype)),
             "b": sg.parameter(np.full(3, -1.0))}
    if extra:
        model["c"] = sg.parameter(np.zeros(2))
    return model


@pytest.mark.parametrize("make, optimizer, messages", [
    (lambda: fresh(w_shape=(3, 2)), sg.optim.Adam,
     ["'w' has shape (2, 3) in the file, (3, 2) here",
      "'optimizer/w/exp_avg' has shape (2, 3) in the file, (3, 2) here"]),
    (lambda: fresh(w_dtype=np.float32), sg.optim.Adam,
     ["'w' is f64 in the file, f32 here", "'optimizer/w/exp_avg' is f64 in the file, f32 here"]),
    (lambda: fresh(extra=True), None, ["'c' is missing from the file"]),
    (lambda: {"w": fresh()["w"]}, None, ["'b' is in the file but not here"]),
    (fresh, lambda: sg.optim.SGD(lr=0.1, momentum=0.9),
     ["the file holds the state of Adam, not of SGD",
      "'optimizer/w/momentum_buffer' is missing from the file",
      "'optimizer/w/exp_avg' is in the file but not here"]),
])
def test_a_file_that_does_not_match_is_refused_and_nothing_is_written(saved, make, optimizer,
                                                                      messages):
    path, _ = saved
    model = make()
    opt = optimizer() if optimizer else None
    before = {k: p.value.copy() for k, p in model.items()}
    with pytest.raises(ValueError, match="the file does not match") as err:
        sg.load_checkpoint(path, model, opt)
    for message in messages:
        assert message in str(err.value)
    assert str(path) in str(err.value)
    for k, p in model.items():
        assert np.array_equal(p.value, before[k]), k       # nothing written, not even 'b'


def test_load_sets_parameters_and_state(saved):
    path, values = saved
    model, opt = fresh(), sg.optim.Adam(lr=0.1)
    sg.load_checkpoint(path, model, opt)
    assert np.array_equal(model["w"].value, values["w"])
    assert np.array_equal(opt.state[model["w"]]["exp_avg"].value, values["w.exp_avg"])
    assert values["w.exp_avg"].any()
    assert float(opt.state[model["b"]]["step"].value) == 1.0
    only_params = fresh()
    sg.load_checkpoint(path, only_params)            # the optimizer's entries are skipped
    assert np.array_equal(only_params["b"].value, values["b"])


def test_an_optimizer_with_state_for_other_parameters_is_refused(tmp_path):
    w, other = sg.parameter(np.ones(2), name="w"), sg.parameter(np.ones(2), name="other")
    opt = sg.optim.SGD(lr=0.1, momentum=0.9)
    opt.updates(sg.sum(w * other), [w, other])
    with pytest.raises(ValueError, match="not being saved or loaded: 'other'"):
        sg.save_checkpoint(tmp_path / "x.npz", [w], opt)
    assert not list(tmp_path.iterdir())


def test_save_replaces_a_file_whole(tmp_path):
    w = sg.parameter(np.ones(2))
    first = sg.save_checkpoint(tmp_path / "x.npz", [w])
    w.value = np.full(2, 3.0)
    assert sg.save_checkpoint(tmp_path / "x.npz", [w]) == first
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]
    other = sg.parameter(np.zeros(2))
    sg.load_checkpoint(first, [other])
    assert other.value.tolist() == [3.0, 3.0]
