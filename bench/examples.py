"""The examples' training steps: staticgrad (numba backend) against PyTorch eager, in one run.

``python -m bench.examples [--steps N] [--rounds R]``. Each example's model is built by the
example's own code (``examples/regression.py``, ``examples/char_rnn.py``); the PyTorch twin
starts from the same weights and takes the same step on the same batch: forward, backward,
gradient clipping where the example clips, the optimizer's update and the learning-rate
schedule (PyTorch's ``scheduler.step()``; staticgrad's schedule is part of the step). The two
first losses are compared before anything is timed. Then the systems alternate, ``rounds``
blocks of ``steps`` steps each, so that a load change on the machine hits them alike; the
table gives the median time per step and the mean of the fastest block (on a shared machine,
the closer to an undisturbed run). ``--threads N`` sets Numba's and PyTorch's thread counts.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def example(name: str):
    """An example script as a module (its ``main`` does not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" /
                                                  f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tensors(torch, *arrays):
    return [torch.nn.Parameter(torch.tensor(np.array(a))) for a in arrays]


def regression(torch, total_steps: int) -> dict:
    R = example("regression")
    X, y, *_ = R.load_data()
    x_batch, y_batch = X[:R.BATCH], y[:R.BATCH]
    model = R.MLP(X.shape[1], R.HIDDEN, np.random.default_rng(0))
    w1, b1, w2, b2 = tensors(torch, *(p.value for p in model.parameters()))
    step, _, _ = R.build(model, total_steps)
    opt = torch.optim.Adam([w1, b1, w2, b2], lr=1e-2, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=1e-3)
    xt, yt = torch.tensor(x_batch), torch.tensor(y_batch)

    def torch_step():
        opt.zero_grad()
        loss = (((torch.tanh(xt @ w1 + b1) @ w2 + b2)[:, 0] - yt) ** 2).mean()
        loss.backward()
        opt.step()
        scheduler.step()
        return loss.item()

    return {"name": "regression.py: MLP 10-8-1, batch 32, Adam + cosine schedule",
            "staticgrad": lambda: float(step(x_batch, y_batch)), "PyTorch eager": torch_step}


def char_rnn(torch, total_steps: int) -> dict:
    C = example("char_rnn")
    text = C.zen()
    chars = sorted(set(text))
    codes = np.array([chars.index(c) for c in text])
    model = C.CharRNN(len(chars), C.HIDDEN, np.random.default_rng(0))
    train, _ = C.build(model, len(chars), total_steps)
    starts = np.random.default_rng(1).integers(0, len(text) - C.WINDOW - 1, C.BATCH)
    window = codes[starts[None, :] + np.arange(C.WINDOW + 1)[:, None]]
    xs, labels = C.one_hot(window[:-1], len(chars)), window[1:].reshape(-1)
    xs_t, labels_t = torch.tensor(xs), torch.tensor(labels)

    def twin(forward, params):
        opt = torch.optim.Adam(params, lr=3e-3)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps,
                                                               eta_min=3e-4)

        def torch_step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(forward().reshape(-1, len(chars)),
                                                     labels_t)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            scheduler.step()
            return loss.item()
        return torch_step

    wx, wh, bh, wy, by = tensors(torch, *(p.value for p in model.parameters()))

    def loop():   # the example's model, written as PyTorch users write it
        projected = xs_t @ wx + bh
        h = torch.zeros(C.BATCH, C.HIDDEN)
        hs = []
        for t in range(C.WINDOW):
            h = torch.tanh(projected[t] + h @ wh)
            hs.append(h)
        return torch.stack(hs) @ wy + by

    rnn = torch.nn.RNN(len(chars), C.HIDDEN, nonlinearity="tanh")
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(model.wx.value.T))
        rnn.weight_hh_l0.copy_(torch.tensor(model.wh.value.T))
        rnn.bias_ih_l0.copy_(torch.tensor(model.bh.value))
        rnn.bias_hh_l0.zero_()
    readout = tensors(torch, model.wy.value, model.by.value)
    return {"name": f"char_rnn.py: tanh RNN, hidden {C.HIDDEN}, {C.WINDOW} steps x batch "
                    f"{C.BATCH}, Adam + clipping + cosine schedule",
            "staticgrad": lambda: float(train(xs, labels)[0]),
            "PyTorch eager": twin(loop, [wx, wh, bh, wy, by]),
            "PyTorch eager, nn.RNN": twin(lambda: rnn(xs_t)[0] @ readout[0] + readout[1],
                                          [*rnn.parameters(), *readout])}


def measure(case: dict, steps: int, rounds: int) -> dict:
    systems = {k: v for k, v in case.items() if k != "name"}
    first = {name: run() for name, run in systems.items()}
    for name, loss in first.items():
        if not math.isclose(loss, first["staticgrad"], rel_tol=1e-4):
            raise AssertionError(f"{case['name']}: {name}'s first loss {loss} differs from "
                                 f"staticgrad's {first['staticgrad']}")
    samples: dict = {name: [] for name in systems}
    blocks: dict = {name: [] for name in systems}
    for _ in range(rounds):
        for name, run in systems.items():
            start = time.perf_counter()
            for _ in range(steps):
                t0 = time.perf_counter()
                run()
                samples[name].append(time.perf_counter() - t0)
            blocks[name].append((time.perf_counter() - start) / steps)
    return {name: (statistics.median(samples[name]), min(blocks[name])) for name in systems}


def show(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per block")
    parser.add_argument("--rounds", type=int, default=10, help="blocks per system")
    parser.add_argument("--threads", type=int, default=None,
                        help="Numba's and PyTorch's thread count (default: theirs)")
    args = parser.parse_args(argv)
    import numba
    import torch

    if args.threads:
        numba.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)

    total = args.steps * args.rounds * 4
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numba "
          f"{numba.get_num_threads()} threads; {args.rounds} blocks of {args.steps} steps per "
          f"system, float32; load average {os.getloadavg()[0]:.2f} at the start\n")
    print("| example | system | median step | × staticgrad | fastest block | × staticgrad |")
    print("|---|---|---|---|---|---|")
    for make in (regression, char_rnn):
        case = make(torch, total)
        times = measure(case, args.steps, args.rounds)
        median0, best0 = times["staticgrad"]
        for name, (median, best) in times.items():
            print(f"| {case['name']} | {name} | {show(median)} | {median / median0:.2f}x | "
                  f"{show(best)} | {best / best0:.2f}x |")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
