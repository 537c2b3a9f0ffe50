"""Identity-name validation, against the rules written out one by one."""

import unicodedata

import pytest

from faceid.gallery.names import MAX_NAME_LENGTH, name_key, validate_identity_name
from faceid.gallery.records import GalleryError

HOSTILE = {
    "empty": "",
    "spaces only": "   ",
    "tab only": "\t",
    "NUL": "al\x00ice",
    "newline": "alice\nbob",
    "only newlines": "\n\n",
    "RTL override": "alice\u202egnp.exe",
    "zero-width space": "ali\u200bce",
    "zero-width joiner": "ali\u200dce",
    "line separator": "alice\u2028",
    "paragraph separator": "alice\u2029x",
    "leading space": " alice",
    "trailing tab": "alice\t",
    "100k characters": "a" * 100_000,
    "one too long": "a" * (MAX_NAME_LENGTH + 1),
    "unknown": "unknown",
    "UNKNOWN": "UNKNOWN",
    "Unknown": "Unknown",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_names_are_refused_with_a_reason(case):
    with pytest.raises(GalleryError, match="identity name"):
        validate_identity_name(HOSTILE[case])


def test_non_strings_are_refused():
    for value in (None, 3, b"alice", ["alice"]):
        with pytest.raises(GalleryError, match="must be a string"):
            validate_identity_name(value)


def test_good_names_come_back_nfc_normalised():
    decomposed = "Jose\u0301 Garci\u0301a"  # combining accents
    assert validate_identity_name(decomposed) == unicodedata.normalize("NFC", decomposed)
    for name in ("alice", "Zoë", "李小龙", "O'Brien-Smith", "a" * MAX_NAME_LENGTH, "x"):
        assert validate_identity_name(name) == name


def test_names_equal_after_case_folding_share_a_key():
    assert name_key("Alice") == name_key("ALICE") == name_key("alice")
    assert name_key("Straße") == name_key("STRASSE")
    assert name_key("Jose\u0301") == name_key("JOSÉ")
    assert name_key("alice") != name_key("alicia")
