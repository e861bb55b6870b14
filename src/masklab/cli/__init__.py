"""The masklab command line: one module per command, each a thin wrapper that parses arguments and calls the
library (torchtune's ``_cli`` layout).

Every command registers in :data:`COMMAND` with ``setup(parser)``, which adds its arguments and sets
``run(args)`` as the parser's ``func``. Known errors (bad paths, bad overrides, bad prompts, corrupted
checkpoints) print one line on stderr and exit 2; set MASKLAB_DEBUG=1 to see the traceback instead. Library
modules never import this package.
"""

from __future__ import annotations

import os
import sys

from ._args import Parser
from ._registry import COMMAND

# importing a command module registers it; the order here is the order of `masklab --help`
# isort: off
from . import ls, train, evaluate, generate, classify, sparsify, compare, show, bench  # noqa: F401, E402
# isort: on

__all__ = ["COMMAND", "build_parser", "main"]

KNOWN_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def build_parser() -> Parser:
    parser = Parser(prog="masklab", description="Every kind of mask in modern deep learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    for entry in COMMAND.entries():
        entry.fn(sub.add_parser(entry.name, help=entry.summary, description=entry.summary))
    return parser


def _parse(parser: Parser, argv: list[str] | None):
    """argparse with ``key=value`` overrides accepted after options too (``--recipe r preset=micro --out z``)."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = _parse(build_parser(), argv)
    except SystemExit as e:  # an argparse error (one line, code 2) returns its code; --help exits 0 as usual
        if e.code:
            return e.code
        raise
    try:
        args.func(args)
    except KNOWN_ERRORS as e:
        if os.environ.get("MASKLAB_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"masklab: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
