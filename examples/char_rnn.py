"""A character-level RNN that learns the Zen of Python (``import this``: text that ships with
Python, no download) and then writes some of its own.

Each training step takes 32 windows of 32 characters and predicts every next character: the
inputs are projected in one matrix product, ``sg.scan`` runs the recurrence
``h = tanh(x_t + h @ Wh)`` as one compiled loop (its gradient is a reverse scan, so the graph
does not grow with the window), and a readout gives the logits for ``sg.cross_entropy``.
``sg.optim.Adam`` updates the weights with the gradients clipped to a global norm of 1
(``max_grad_norm``) and a cosine learning-rate schedule in the graph. Sampling uses a second
compiled function, one RNN step on the same parameters.

Step time (forward, backward through the 32 time steps, clipping, the Adam update and its
schedule; batch 32, 45 characters, hidden 128, float32), measured with ``python -m
bench.examples``: the model built by this file against PyTorch eager twins starting from the
same weights, the systems alternating in blocks of steps, on a 2-core AMD EPYC shared with other
jobs (load average 3 to 6). Median step, one thread each (``OPENBLAS_NUM_THREADS=1 python -m
bench.examples --threads 1``): staticgrad 5.0 ms,
PyTorch eager 8.2 ms with the same Python loop over time steps and 6.9 ms with
``torch.nn.RNN``'s C++ loop (1.6x and 1.4x slower). With two threads each (the defaults, load
average 1): staticgrad 4.4 ms, PyTorch eager 10.4 ms and 9.2 ms. (Before the scan's BLAS
threads were chosen per product and Numba's idle workers made to sleep between loops,
staticgrad was the slower one with two threads, 16 ms: spinning workers took the cores from
the BLAS threads of the scan's 128 small products.)

    python examples/char_rnn.py [--quick] [--plot char_rnn.png]
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import io
import time

import numpy as np

import staticgrad as sg

HIDDEN, WINDOW, BATCH = 128, 32, 32


def zen() -> str:
    """The Zen of Python: ``this.s`` is rot13 (importing ``this`` prints it, hence the
    redirect)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13")


class CharRNN(sg.Module):
    def __init__(self, vocab: int, hidden: int, rng: np.random.Generator):
        self.wx = sg.parameter(sg.init.xavier_uniform((vocab, hidden), rng, gain=5 / 3))
        self.wh = sg.parameter(sg.init.xavier_uniform((hidden, hidden), rng, gain=5 / 3) * 0.5)
        self.bh = sg.parameter(np.zeros(hidden, np.float32))
        self.wy = sg.parameter(sg.init.xavier_uniform((hidden, vocab), rng))
        self.by = sg.parameter(np.zeros(vocab, np.float32))

    def cell(self, h, x_projected):
        return sg.tanh(x_projected + h @ self.wh)

    def forward(self, h0, xs):
        """Logits ``(T, B, vocab)`` for one-hot inputs ``xs (T, B, vocab)``, and the last h."""
        steps, batch, vocab = xs.shape
        projected = (xs.reshape((steps * batch, vocab)) @ self.wx + self.bh)
        projected = projected.reshape((steps, batch, -1))
        h, hs = sg.scan(lambda h, x: (self.cell(h, x), self.cell(h, x)), h0, projected)
        return h, hs @ self.wy + self.by


def one_hot(indices: np.ndarray, vocab: int) -> np.ndarray:
    return np.eye(vocab, dtype=np.float32)[indices]


def build(model: CharRNN, vocab: int, total_steps: int):
    """The training step (loss, accuracy) and one sampling step of the same parameters."""
    xs = sg.placeholder((WINDOW, BATCH, vocab), np.float32, name="xs")
    labels = sg.placeholder((WINDOW * BATCH,), np.int64, name="labels")
    h0 = sg.constant(np.zeros((BATCH, HIDDEN), np.float32))
    _, logits = model(h0, xs)
    logits = logits.reshape((WINDOW * BATCH, vocab))
    loss = sg.cross_entropy(logits, labels)
    accuracy = sg.mean(sg.cast(sg.argmax(logits, axis=1) == labels, np.float32))
    opt = sg.optim.Adam(lr=sg.optim.cosine_lr(3e-3, total_steps, min_lr=3e-4),
                        max_grad_norm=1.0)
    train = sg.function([xs, labels], [loss, accuracy], updates=opt.updates(loss, model))

    h = sg.placeholder((1, HIDDEN), np.float32, name="h")
    x = sg.placeholder((1, vocab), np.float32, name="x")
    h_next = model.cell(h, x @ model.wx + model.bh)
    sample_step = sg.function([h, x], [h_next, sg.softmax(h_next @ model.wy + model.by)])
    return train, sample_step


def sample(sample_step, prime: str, length: int, chars: list, rng, temperature: float) -> str:
    index = {c: k for k, c in enumerate(chars)}
    h = np.zeros((1, HIDDEN), np.float32)
    out = list(prime)
    for c in prime[:-1]:
        h, _ = sample_step(h, one_hot(np.array([index[c]]), len(chars)))
    c = prime[-1]
    for _ in range(length):
        h, probs = sample_step(h, one_hot(np.array([index[c]]), len(chars)))
        p = np.asarray(probs[0], np.float64) ** (1.0 / temperature)
        c = chars[rng.choice(len(chars), p=p / p.sum())]
        out.append(c)
    return "".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (the tests use it)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--plot", default="char_rnn.png", help="where to write the PNG")
    args = parser.parse_args(argv)
    steps = args.steps or (150 if args.quick else 1500)

    from tqdm import tqdm

    text = zen()
    chars = sorted(set(text))
    codes = np.array([chars.index(c) for c in text])
    rng = np.random.default_rng(0)
    model = CharRNN(len(chars), HIDDEN, rng)
    start = time.perf_counter()
    train, sample_step = build(model, len(chars), steps)
    print(f"{len(text)} characters, {len(chars)} distinct; built in "
          f"{time.perf_counter() - start:.2f} s: a step of {len(train.kernels)} kernels")

    losses, accuracies, step_times = [], [], []
    bar = tqdm(range(steps), desc="training", unit="step")
    for k in bar:
        starts = rng.integers(0, len(text) - WINDOW - 1, BATCH)
        window = codes[starts[None, :] + np.arange(WINDOW + 1)[:, None]]   # (WINDOW + 1, BATCH)
        t0 = time.perf_counter()
        loss, accuracy = train(one_hot(window[:-1], len(chars)), window[1:].reshape(-1))
        step_times.append(time.perf_counter() - t0)
        losses.append(float(loss))
        accuracies.append(float(accuracy))
        if k % 10 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", accuracy=f"{accuracies[-1]:.2f}")
    for k in [0, *range(steps // 5 - 1, steps, steps // 5)]:
        print(f"step {k + 1:5d}  loss {losses[k]:.3f} nats/char  accuracy {accuracies[k]:.2f}")
    print(f"the first step (compiling or loading the kernels) {step_times[0]:.2f} s, then a "
          f"median {np.median(step_times[1:]) * 1e3:.2f} ms per step")
    print("sample:")
    print(sample(sample_step, "Beautiful is", 300, chars, rng, temperature=0.5))
    plot(losses, accuracies, args.plot)
    print(f"wrote {args.plot}")


def plot(losses: list, accuracies: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    steps = np.arange(1, len(losses) + 1)
    left.plot(steps, losses)
    left.set(xlabel="step", ylabel="cross-entropy (nats/char)", title="training loss")
    right.plot(steps, accuracies)
    right.set(xlabel="step", ylabel="next-character accuracy", title="accuracy on the batch",
              ylim=(0, 1))
    fig.suptitle(f"char-RNN on the Zen of Python (hidden {HIDDEN}, sg.scan)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
