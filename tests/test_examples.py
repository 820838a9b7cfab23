"""Every script in examples/ runs end to end, exits 0 and prints what it promises."""

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


# what each known example must print, beyond exiting 0 with some output
EXPECTED = {"mlp.py": check_mlp, "digits_cnn.py": check_digits_cnn}


def arguments(script: Path, tmp_path: Path) -> list:
    """The short mode of an example that has one, writing its files under ``tmp_path``."""
    if script.name == "digits_cnn.py":
        return ["--quick", "--plot", str(tmp_path / "digits_cnn.png")]
    return []


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
    result = subprocess.run([sys.executable, str(script), *arguments(script, tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{script.name} printed nothing"
    assert "Traceback" not in result.stderr, result.stderr
    check = EXPECTED.get(script.name)
    if check is not None:
        check(result.stdout)
    if script.name == "digits_cnn.py":
        assert (tmp_path / "digits_cnn.png").read_bytes().startswith(b"\x89PNG")
