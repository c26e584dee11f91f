"""The ``asgitrace`` command line; the only module that reads argv, prints or exits.

Commands: ``demo`` (the tutorial's endpoint), ``trace`` (requests to your own app),
``serve`` (your app under uvicorn, one line per request) and ``show`` (saved traces).
`_parser` builds the parser, `_commands` and `_serve` run the commands, `_output` writes
what they report; the helpers they drive (`_app`, `_run`, `_report`) compute and never
print.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Final

from rich.console import Console
from rich.text import Text

from ..views import THEME
from ._app import CliError
from ._commands import demo, show, trace
from ._output import stderr
from ._parser import build_parser
from ._serve import serve

__all__ = ["CliError", "main"]

_COMMANDS: Final[dict[str, Callable[[argparse.Namespace, Console], int]]] = {
    "demo": demo,
    "trace": trace,
    "serve": serve,
    "show": show,
}


def _error(message: str) -> None:
    line = Text("asgitrace: error:", style="red")
    line.append(" " + message)
    stderr().print(line, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    0: done; 1: an unexpected error, or requests without an answer; 2: an error the user
    can act on (bad arguments, an app that cannot be imported, a port in use, an
    unreadable file); 130: interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    console = Console(theme=THEME)
    try:
        return _COMMANDS[args.command](args, console)
    except CliError as exc:
        if args.debug:
            raise
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        _error("interrupted")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        _error(f"{type(exc).__name__}: {exc} (run with --debug for details)")
        return 1
