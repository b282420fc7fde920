"""List the config presets that ``--config NAME`` takes, with the first line of each file's comment."""

from __future__ import annotations

import argparse
import re

from camfields.config import SCENES_DIR


def preset_summaries() -> dict[str, str]:
    """Preset name (e.g. ``image/natural``) -> its leading comment up to the first '. ' or ': ' ('' if none)."""
    summaries = {}
    for path in sorted(SCENES_DIR.rglob("*.toml")):
        comment = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("#").strip())
        text = " ".join(comment)
        summary = re.split(r"(?<!\.)\. |: ", text, maxsplit=1)[0].rstrip(".:")
        summaries[path.relative_to(SCENES_DIR).with_suffix("").as_posix()] = summary
    return summaries


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("task", nargs="?", help="only this task's presets: image, nerf, dynamic or video")
    args = parser.parse_args(argv)
    summaries = {
        name: text for name, text in preset_summaries().items() if not args.task or name.startswith(f"{args.task}/")
    }
    width = max(map(len, summaries), default=0)
    for name, text in summaries.items():
        print(f"{name:<{width}}  {text}")
