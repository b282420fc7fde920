"""The package works when installed: the wheel holds the presets, the kernel sources and the
``camfields`` command, and a fresh environment outside the checkout runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, shared_data

from camfields import cuda_build
from camfields.commands import COMMANDS
from camfields.config import SCENES_DIR


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO), "-w", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = out.glob("camfields-*.whl")
    return path


def test_the_wheel_holds_presets_kernel_sources_and_the_command(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = {p.relative_to(SCENES_DIR).as_posix() for p in SCENES_DIR.rglob("*.toml")}
    assert len(presets) > 20 and {f"camfields/_presets/{p}" for p in presets} <= names
    kernels = cuda_build.SOURCE_FILES + cuda_build.HEADER_FILES
    assert {f"camfields/_csrc/{name}" for name in kernels} <= names
    assert {f"camfields/commands/{module}.py" for module, _ in COMMANDS.values()} <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "camfields = camfields.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, Path]:
    """(bin folder of a fresh venv holding the wheel, a working folder outside the checkout).

    The venv sees this interpreter's packages (torch and the other dependencies) but imports
    camfields from its own install, not from the checkout."""
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    work = root / "work"
    work.mkdir()
    return venv / "bin", work


def run_installed(installed, *args: str) -> subprocess.CompletedProcess:
    bin_dir, work = installed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [*args], cwd=work, env={**env, "PATH": f"{bin_dir}:{env['PATH']}"}, capture_output=True, text=True
    )


@pytest.mark.slow
def test_an_installed_package_runs_outside_the_checkout(installed):
    bin_dir, work = installed
    where = run_installed(
        installed,
        "python",
        "-c",
        "import camfields, camfields.config as c, camfields.cuda_build as b; "
        "print(camfields.__file__, c.SCENES_DIR, b.cuda_dir())",
    )
    assert where.returncode == 0, where.stderr[-2000:]
    package, scenes, kernels = where.stdout.split()
    assert all(path.startswith(str(bin_dir.parent)) for path in (package, scenes, kernels)), where.stdout
    assert Path(scenes).name == "_presets" and (Path(kernels) / "grid_modulate.cu").is_file()

    presets = run_installed(installed, "camfields", "presets", "nerf")
    assert presets.returncode == 0 and "nerf/lego_cpu" in presets.stdout and "image/" not in presets.stdout

    fit = run_installed(
        installed, "camfields", "fit", "image", "--steps", "5", "--downscale", "8", "--out", "runs/a", "--quiet"
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    metrics = json.loads((work / "runs" / "a" / "metrics.json").read_text())
    assert metrics["steps"] == 5 and 5 < metrics["psnr"] < 60
    assert json.loads(fit.stdout.strip().splitlines()[-1])["psnr"] == pytest.approx(metrics["psnr"])

    same = run_installed(installed, "python", "-m", "camfields", "fit", "video", "--help")
    assert same.returncode == 0 and same.stdout.startswith("usage: camfields fit video")


@pytest.mark.slow
def test_an_installed_package_fits_a_scene_from_a_preset(installed):
    """A user's config extending an installed preset (one evaluation view, no turntable, 50x50)."""
    lego = shared_data("nerf/lego")
    config = installed[1] / "lego_small.toml"
    config.write_text('extends = "nerf/lego_cpu"\ndownscale = 8\neval_views = 1\nturntable_frames = 0\n')
    fit = run_installed(
        installed,
        *("camfields", "fit", "nerf", "--data", str(lego), "--config", str(config), "--steps", "20"),
        *("--out", "runs/lego", "--quiet"),
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    resolved = json.loads((installed[1] / "runs" / "lego" / "config.json").read_text())
    assert resolved["train"]["batch_size"] == 512 and resolved["downscale"] == 8  # the preset's, then the file's
    metrics = json.loads((installed[1] / "runs" / "lego" / "metrics.json").read_text())
    assert metrics["steps"] == 20 and metrics["psnr"] > 5


def test_the_command_names_its_subcommands_and_refuses_others(capsys):
    from camfields.__main__ import main

    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"camfields {words}" in listed for words in COMMANDS)
    assert main(["fit", "sculpture"]) == 2
    assert "'fit sculpture' is not a command" in capsys.readouterr().err
