"""The `gluegun` command line (also `python -m gluegun_actors`): one module per command.

`main.py` parses the arguments and dispatches; `demo`, `ws`, `http` and `serve` are the
commands; `connecting`, `progress`, `output`, `lines` and `exits` are what they share.
It needs only the core install (argparse); `prompt_toolkit` (the `cli` extra) adds line
editing to `ws` on a terminal.
"""

from gluegun_actors._cli.main import main

__all__ = ["main"]
