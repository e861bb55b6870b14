"""The command registry (kind "command"), apart from ``__init__`` so that command modules can import it."""

from masklab.registry import Registry

COMMAND = Registry("command", "CLI commands: setup(parser) adds the arguments and sets run(args) as func")
