"""The `faceid` command: builds the argument parser from `faceid.commands.COMMANDS` and dispatches.

Every option has help text and shows its default; every command takes `--json`. Exit status: 0 success (for
`compare` and `verify`: the same person), 1 a negative answer (`compare`/`verify`: different people) or nothing
done, 2 an error (a bad argument, a missing file, an unusable gallery...), reported in one line on stderr.
"""

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from faceid.commands import COMMANDS
from faceid.commands.output import add_output_option

ERROR = 2


class DefaultsShown(argparse.HelpFormatter):
    """Appends `(default: X)` to an option's help unless the help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {action.default})"


def build_parser() -> argparse.ArgumentParser:
    from faceid import __version__

    parser = argparse.ArgumentParser(prog="faceid", description="Face identification: detect, align, train, "
                                     "export, enroll, verify and identify.", formatter_class=DefaultsShown)
    parser.add_argument("--version", action="version", version=f"faceid {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(commands.add_parser(name, help=command.SUMMARY, description=command.SUMMARY))
    for sub in command_parsers(parser):
        sub.formatter_class = DefaultsShown
        if not sub_actions(sub):
            add_output_option(sub)
    return parser


def sub_actions(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of `parser`'s actions (`faceid gallery list`...): a subparsers action's choices map names to them."""
    return [choice for action in parser._actions if isinstance(action.choices, dict)
            for choice in action.choices.values()]


def command_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser below `parser`: each command's, and each action's of a command with actions."""
    for sub in sub_actions(parser):
        yield sub
        yield from command_parsers(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "enroll" and not any(e.startswith("-") for e in extra):
        args.images += [Path(e) for e in extra]  # `enroll GALLERY --identity NAME IMAGES...`: images after the option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command].run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"faceid {args.command}: error: {error}", file=sys.stderr)
        return ERROR


if __name__ == "__main__":
    sys.exit(main())
