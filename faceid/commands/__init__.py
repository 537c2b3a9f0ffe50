"""The subcommands of `faceid`, one module each.

Every module holds `SUMMARY` (one line for `faceid --help`), `add_arguments(parser)` and `run(args) -> int`
(the exit status). A module imports its stage (training, export, gallery, evaluation) inside `run`, so
`faceid --help` and each command load only what they use. `COMMANDS` is the one list: adding a command is
one new module plus one entry here.
"""

from types import ModuleType

from faceid.commands import (
    align,
    bench,
    compare,
    compare_losses,
    demo,
    embed,
    enroll,
    evaluate,
    export,
    find,
    gallery,
    identify,
    models,
    prepare,
    serve,
    synth,
    train,
    verify,
)

COMMANDS: dict[str, ModuleType] = {
    "synth": synth,
    "align": align,
    "prepare": prepare,
    "train": train,
    "export": export,
    "embed": embed,
    "enroll": enroll,
    "compare": compare,
    "find": find,
    "verify": verify,
    "identify": identify,
    "gallery": gallery,
    "serve": serve,
    "evaluate": evaluate,
    "compare-losses": compare_losses,
    "bench": bench,
    "models": models,
    "demo": demo,
}
