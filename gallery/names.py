"""Identity names: one validation for the CLI, the HTTP API and imports.

A name is NFC-normalised, 1-128 characters, holds no control, format or line/paragraph separator
characters (Unicode categories Cc, Cf, Zl, Zp: NUL, newlines, RTL overrides, zero-width joiners...),
has no leading or trailing whitespace, and is not `unknown` in any case (the answer for a probe below
the threshold). Two names that are equal after case folding name the same person: `name_key` is
what the gallery compares, so "Alice" cannot be enrolled beside "alice".
"""

import unicodedata

from faceid.gallery.records import GalleryError

MAX_NAME_LENGTH = 128
UNKNOWN = "unknown"
FORBIDDEN_CATEGORIES = {"Cc": "a control character", "Cf": "a format character (e.g. zero-width or bidi override)",
                        "Zl": "a line separator", "Zp": "a paragraph separator"}


def name_key(name: str) -> str:
    """The case-folded, NFC form under which names are compared."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def validate_identity_name(name) -> str:
    """The NFC form of `name`, or GalleryError saying what is wrong with it."""
    if not isinstance(name, str):
        raise GalleryError(f"identity name must be a string, got {type(name).__name__}")
    normalized = unicodedata.normalize("NFC", name)
    shown = ascii(normalized[:40]) + ("..." if len(normalized) > 40 else "")
    if not normalized:
        raise GalleryError("identity name is empty")
    if len(normalized) > MAX_NAME_LENGTH:
        raise GalleryError(f"identity name {shown} has {len(normalized)} characters; at most {MAX_NAME_LENGTH}")
    for position, character in enumerate(normalized):
        category = unicodedata.category(character)
        if category in FORBIDDEN_CATEGORIES:
            raise GalleryError(f"identity name {shown} holds {FORBIDDEN_CATEGORIES[category]} "
                               f"(U+{ord(character):04X}) at position {position}")
    if normalized != normalized.strip():
        raise GalleryError(f"identity name {shown} has leading or trailing whitespace")
    if name_key(normalized) == UNKNOWN:
        raise GalleryError(f"identity name {shown} is reserved: '{UNKNOWN}' is the answer for an unknown face")
    return normalized


def refuse_name_clash(store, name: str) -> None:
    """GalleryError when another identity of `store` holds `name` up to case."""
    if (taken := store.name_taken(name)) is not None:
        raise GalleryError(f"identity name {name!r} clashes with the enrolled {taken!r}: names are compared "
                           "ignoring case; use the enrolled name, or a different one")
