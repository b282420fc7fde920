"""The README's Python API example runs as printed, and reaches the quality it implies."""

from __future__ import annotations

import contextlib
import io
import re

from conftest import REPO


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert blocks, "README has no Python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        out = io.StringIO()
        namespace: dict = {}
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), namespace)
        psnr = float(re.search(r"PSNR ([\d.]+) dB", out.getvalue()).group(1))
        assert psnr > 30, out.getvalue()
        assert (tmp_path / "runs" / "chirp" / "checkpoint.pt").exists()
