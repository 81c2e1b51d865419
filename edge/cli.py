"""What the command-line tools share: one-line argument errors and readable ``--help``.

Every failure of a CLI, a bad flag included, is one ``error: ...`` line on stderr and exit
status 2, never a usage dump or a traceback.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` that reports a bad command line in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it says something (not None, not an off switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or "default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)
