"""The ``camfields`` command line: every subcommand's help shows only options that work for it."""

from __future__ import annotations

import pytest
from conftest import REPO

from camfields.__main__ import main
from camfields.commands import COMMANDS


def exit_code(argv: list[str]) -> int:
    """The status ``camfields ARGV`` ends with (argparse exits for --help and its own errors)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def help_text(words: str, capsys) -> str:
    assert exit_code([*words.split(), "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "words,example",
    [
        ("fit image", "image/natural"),
        ("fit nerf", "nerf/lego"),
        ("fit dynamic", "dynamic/hook"),
        ("fit video", "video/bunny_cpu"),
    ],
)
def test_each_fit_command_names_its_own_preset_example(words, example, capsys):
    text = help_text(words, capsys)
    assert text.startswith(f"usage: camfields {words}") and f"e.g. {example}" in " ".join(text.split())
    assert all(
        other not in text
        for other in ("image/natural", "nerf/lego", "dynamic/hook", "video/bunny_cpu")
        if other != example
    )


def test_a_video_fit_offers_epochs_not_steps(capsys):
    text = help_text("fit video", capsys)
    assert "--epochs" in text and "--steps" not in text
    assert exit_code(["fit", "video", "--video", "clip.mp4", "--out", "runs/v", "--steps", "5"]) == 2
    assert "unrecognized arguments: --steps 5" in capsys.readouterr().err


def test_every_command_has_help(capsys):
    for words in COMMANDS:
        assert help_text(words, capsys).startswith(f"usage: camfields {words}")


@pytest.mark.parametrize(
    "words, longer",
    [("fit image", "--steps"), ("fit nerf", "--steps"), ("fit dynamic", "--steps"), ("fit video", "--epochs")],
)
def test_every_fit_command_says_how_to_extend_a_fit(words, longer, capsys):
    text = " ".join(help_text(words, capsys).split())
    assert f"with a larger {longer} it extends the fit" in text


def test_debug_shows_the_traceback_behind_a_one_line_error(tmp_path):
    import os
    import subprocess
    import sys

    argv = ["fit", "image", "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]
    env = {k: v for k, v in os.environ.items() if k != "CAMFIELDS_DEBUG"}
    plain, debug = (
        subprocess.run([sys.executable, "-m", "camfields", *extra, *argv], capture_output=True, text=True, env=env)
        for extra in ([], ["--debug"])
    )
    assert plain.returncode == debug.returncode == 2
    assert plain.stderr.strip().splitlines() == [f"error: image {tmp_path / 'missing.png'} does not exist"]
    assert "Traceback (most recent call last)" in debug.stderr and "load_image" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()
    assert not (tmp_path / "o").exists()


def test_a_reader_that_leaves_early_is_no_error():
    import subprocess
    import sys

    code = "import sys\nfrom camfields.cli import run\n"
    code += "sys.exit(run(lambda argv: [print('x' * 80) for _ in range(200000)]))"
    done = subprocess.run(
        f'{sys.executable} -c "{code}" | head -n 1', shell=True, capture_output=True, text=True, timeout=120
    )
    assert done.stdout == "x" * 80 + "\n" and "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "scripts").glob("*.py")))
def test_every_script_wrapper_runs_its_command(script):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith(f"usage: {script}"), done.stderr[-500:]
