"""The `faceid` command: builds the argument parser from `faceid.commands.COMMANDS` and dispatches."""

import argparse
import sys
from pathlib import Path

from faceid.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    from faceid import __version__

    parser = argparse.ArgumentParser(prog="faceid", description="Face identification: detect, align, train, "
                                     "export, enroll, verify and identify.")
    parser.add_argument("--version", action="version", version=f"faceid {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(commands.add_parser(name, help=command.SUMMARY, description=command.SUMMARY))
    return parser


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
        return 1


if __name__ == "__main__":
    sys.exit(main())
