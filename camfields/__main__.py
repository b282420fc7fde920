"""The ``camfields`` command (also ``python -m camfields``).

    camfields fit image|nerf|dynamic|video [options]
    camfields eval-rd [options]
    camfields compress RUN_DIR --bits B --out FILE
    camfields decompress FILE --out PATH [options]
    camfields decode FILE [options]
    camfields presets [TASK]
    camfields info RUN_DIR_OR_FILE [--json]

``camfields <command> --help`` shows a command's options; ``camfields --debug <command> ...``
shows the traceback behind an error (and checks values on GPU tensors; ``CAMFIELDS_DEBUG=1``).
"""

from __future__ import annotations

import importlib
import os
import sys

from camfields.cli import DEBUG_ENV, run
from camfields.commands import COMMANDS


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  camfields {words:<{width}}  {help_text}" for words, (_, help_text) in COMMANDS.items()]
    return "usage: camfields [--debug] <command> [options]\n\ncommands:\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand that ``argv`` (default: the command line) names; its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--debug"]:
        os.environ[DEBUG_ENV] = "1"
        argv = argv[1:]
    for words, (module_name, _) in COMMANDS.items():
        count = len(words.split())
        if argv[:count] == words.split():
            module = importlib.import_module(f"camfields.commands.{module_name}")
            return run(lambda args: module.main(args, prog=f"camfields {words}"), argv[count:])
    if argv and argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    given = " ".join(argv[:2]) if argv else "no command"
    print(f"camfields: {given!r} is not a command\n{usage()}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
