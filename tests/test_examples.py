"""Every script in examples/ runs end to end, exits 0 and prints what it promises; the
examples that train on real data run in their short mode (``--quick``) and write their plot
into a temporary folder (``--plot``)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def check_mlp(stdout: str) -> None:
    losses = [float(v) for v in re.findall(r"step\s+\d+\s+loss\s+(\S+)", stdout)]
    steps = [int(v) for v in re.findall(r"step\s+(\d+)\s+loss", stdout)]
    assert steps == [100, 200, 300, 400, 500], stdout
    # the tutorial's network fits its random data: the loss falls by orders of magnitude
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 1e-3 * losses[0], losses
    assert "500 steps in" in stdout and "fused kernels" in stdout


def check_digits_cnn(stdout: str) -> None:
    accuracy = [float(v) for v in re.findall(r"test accuracy (\S+)\n", stdout)]
    losses = [float(v) for v in re.findall(r"epoch\s+\d+\s+loss (\S+)", stdout)]
    assert len(losses) == 3 and losses[-1] < losses[0] / 2, stdout   # --quick: 3 epochs
    assert accuracy and accuracy[-1] > 0.85, stdout     # (the full 20 epochs reach >= 0.97)
    assert "plot written to" in stdout


def check_regression(stdout: str) -> None:
    untrained, trained = map(float, re.search(r"train MSE (\S+) untrained -> (\S+) after",
                                               stdout).groups())
    assert trained < 0.8 * untrained, stdout
    r2, least_squares = map(float, re.search(r"test R\^2 (\S+); least squares: test R\^2 "
                                             r"(\S+)", stdout).groups())
    # the data is nearly linear: the MLP should come close to least squares (0.45) or beat it
    assert r2 > 0.4 and least_squares > 0.4, stdout
    assert "Adam steps" in stdout


def check_char_rnn(stdout: str) -> None:
    rows = [(float(loss), float(acc)) for loss, acc in
            re.findall(r"step\s+\d+\s+loss (\S+) nats/char\s+accuracy (\S+)", stdout)]
    assert len(rows) >= 5, stdout
    (first_loss, _), (last_loss, last_accuracy) = rows[0], rows[-1]
    assert first_loss > 3.0 and last_loss < 0.5 * first_loss and last_accuracy > 0.5, rows
    sample = stdout.split("sample:\n", 1)[1]
    assert sample.startswith("Beautiful is") and len(sample.splitlines()[0]) > 12, sample


# what each known example must print, beyond exiting 0 with some output
EXPECTED = {"mlp.py": check_mlp, "regression.py": check_regression,
            "char_rnn.py": check_char_rnn, "digits_cnn.py": check_digits_cnn}
# examples with a short mode and a plot: run short, the plot written to a temporary folder
SHORT = {"regression.py", "char_rnn.py", "digits_cnn.py"}


def test_examples_exist():
    assert "mlp.py" in [p.name for p in EXAMPLES]


# examples that need an optional extra, by the module it provides
NEEDS = {"distributed_mlp.py": "distributed"}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path):
    if script.name in NEEDS:
        pytest.importorskip(NEEDS[script.name], reason="needs dask[distributed] "
                            "(pip install -e '.[distributed]')")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    plot = tmp_path / f"{script.stem}.png"
    args = ["--quick", "--plot", str(plot)] if script.name in SHORT else []
    result = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{script.name} printed nothing"
    assert "Traceback" not in result.stderr, result.stderr
    check = EXPECTED.get(script.name)
    if check is not None:
        check(result.stdout)
    if script.name in SHORT:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{script.name} wrote no PNG"
        assert str(plot) in result.stdout


def test_the_training_examples_are_checked():
    assert SHORT <= {p.name for p in EXAMPLES} and SHORT <= set(EXPECTED)
