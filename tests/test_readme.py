"""The README's Python snippets run as written, in order, in one namespace."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def snippets() -> list:
    text = (ROOT / "README.md").read_text()
    return [(m.group(1), text[:m.start()].count("\n") + 2)
            for m in re.finditer(r"```python\n(.*?)```", text, re.S)]


def test_readme_snippets_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                      # step.render writes step.svg here
    if shutil.which("dot") is None:                  # a stand-in for Graphviz, if it is missing
        fake = tmp_path / "bin" / "dot"
        fake.parent.mkdir()
        fake.write_text("#!/bin/sh\nfor a in \"$@\"; do last=\"$a\"; done\n"
                        "cat > /dev/null\necho '<svg/>' > \"$last\"\n")
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    found = snippets()
    assert len(found) >= 2
    namespace: dict = {}
    for code, line in found:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "graph(" in out and "explain (numba)" in out and "def run(" in out
    assert (tmp_path / "step.svg").exists()
