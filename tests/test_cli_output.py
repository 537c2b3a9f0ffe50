"""The command line is even: every option explains itself and shows its default, every command takes --json, human
views by default, one candidate schema for the CLI and HTTP, and exit codes that say the answer."""

import argparse
import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from faceid.cli import build_parser, command_parsers, main, sub_actions


def _leaf_parsers():
    return [sub for sub in command_parsers(build_parser()) if not sub_actions(sub)]


def test_every_option_has_help_and_shows_its_default():
    missing, hidden = [], []
    for parser in _leaf_parsers():
        formatter = parser.formatter_class(parser.prog)
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{parser.prog} {action.option_strings[0]}")
            elif action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in (
                    formatter._get_help_string(action)):
                hidden.append(f"{parser.prog} {action.option_strings[0]}")
    assert not missing, f"options without help: {missing}"
    assert not hidden, f"options hiding their default: {hidden}"


def test_every_command_takes_json():
    assert all(any("--json" in a.option_strings for a in p._actions) for p in _leaf_parsers())


def _help(*command) -> str:
    with pytest.raises(SystemExit):
        main([*command, "--help"])


@pytest.mark.parametrize("command", [("identify",), ("verify",), ("serve",), ("gallery", "stats")])
def test_model_help_is_right_for_a_command_that_never_creates_a_gallery(command, capsys):
    _help(*command)
    text = " ".join(capsys.readouterr().out.split())
    assert "needed when the gallery is created" not in text and "naming another one is refused" in text


def test_help_of_enroll_embed_serve_and_verify_says_what_users_need(capsys):
    _help("enroll")
    assert "(default dlib_resnet_v1)" in " ".join(capsys.readouterr().out.split())
    _help("embed")
    assert "model-zoo name" in capsys.readouterr().out
    _help("serve")
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 127.0.0.1)" in text and "(default: 8000)" in text
    _help("verify")
    assert "the enrolled identity the probe claims to be" in " ".join(capsys.readouterr().out.split())


@pytest.fixture
def gallery(tmp_path):
    """A pixel-model gallery of two people, threshold 0.9 set by hand."""
    for person in range(2):
        folder = tmp_path / "people" / f"p{person}"
        folder.mkdir(parents=True)
        pixels = np.random.default_rng(person).integers(0, 255, (8, 8, 3), np.uint8)
        Image.fromarray(pixels).save(folder / "0.png")
    assert main(["enroll", str(tmp_path / "g"), "--model", "pixels", "--aligned", "--from-folder",
                 str(tmp_path / "people")]) == 0
    assert main(["gallery", "set-threshold", str(tmp_path / "g"), "0.9"]) == 0
    return tmp_path


def test_verify_exit_code_says_the_answer(gallery, capsys):
    probe = str(gallery / "people" / "p0" / "0.png")
    capsys.readouterr()
    assert main(["verify", str(gallery / "g"), probe, "--identity", "p0"]) == 0
    assert capsys.readouterr().out.startswith("p0: same person")
    assert main(["verify", str(gallery / "g"), probe, "--identity", "p1"]) == 1
    assert "not the same person" in capsys.readouterr().out
    assert main(["verify", str(gallery / "g"), probe, "--identity", "nobody"]) == 2


def test_human_views_by_default_and_json_on_request(gallery, capsys):
    probe = str(gallery / "people" / "p1" / "0.png")
    for command in (["identify", str(gallery / "g"), probe], ["gallery", "list", str(gallery / "g")],
                    ["gallery", "stats", str(gallery / "g")]):
        capsys.readouterr()
        main(command)
        human = capsys.readouterr().out
        with pytest.raises(json.JSONDecodeError):
            json.loads(human)
        main([*command, "--json"])
        json.loads(capsys.readouterr().out)
    main(["identify", str(gallery / "g"), probe])
    assert "p1  (threshold 0.900, set by hand; top: p1 1.000" in capsys.readouterr().out


def test_cli_and_http_share_one_candidate_schema(gallery, capsys):
    from faceid.gallery.service.app import create_app
    from faceid.gallery.session import open_gallery
    from tests.gallery.http_client import call, running

    probe = gallery / "people" / "p1" / "0.png"
    capsys.readouterr()
    main(["identify", str(gallery / "g"), str(probe), "--json"])
    cli = json.loads(capsys.readouterr().out)[0]["candidates"]
    with open_gallery(gallery / "g") as opened, running(create_app(opened)) as (base, _):
        status, body = call(f"{base}/identify", "POST", files=[("file", "p.png", probe.read_bytes())], key=None)
    assert status == 200, body
    http = body["candidates"]
    assert [set(c) for c in cli] == [set(c) for c in http] == [{"identity", "score"}] * 2
    assert [c["identity"] for c in cli] == [c["identity"] for c in http]


def test_evaluate_reports_photos_without_a_face_as_such(tmp_path):
    from faceid.data.folder import list_identity_folder
    from faceid.data.protocols import build_pair_protocol
    from faceid.embedder import PixelEmbedder
    from faceid.evaluation.runner import evaluate_pairs

    for person in range(4):
        for number in range(5):
            folder = tmp_path / "data" / f"p{person}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(person * 10 + number).integers(0, 255, (16, 16, 3), np.uint8)
            Image.fromarray(pixels).save(folder / f"{number}.png")
    blank = str(tmp_path / "data" / "p0" / "0.png")

    class NoFaceIn:  # finds a face everywhere but in one photo
        detector = SimpleNamespace(select="subject")

        def many(self, rgbs):
            return [[] if (rgb == np.asarray(Image.open(blank))).all()
                    else [SimpleNamespace(crop=rgb, face=SimpleNamespace(ambiguous=False))] for rgb in rgbs]

        def centred(self, rgb):
            return SimpleNamespace(crop=rgb)

    protocol = build_pair_protocol(list_identity_folder(tmp_path / "data"), folds=10, pairs_per_fold=4)
    report = evaluate_pairs(protocol, tmp_path / "out", "pixels", tmp_path / "data", PixelEmbedder(16),
                            progress=False, preprocessor=NoFaceIn(), no_face="skip")
    text = (tmp_path / "out" / "report.md").read_text()
    assert report["images_failed_by_reason"] == {"no face found": 1, "missing": 0, "unreadable": 0}
    assert "(no face found: 1)" in text and "missing or unreadable" not in text
    assert report["pairs_skipped"] > 0
    report = evaluate_pairs(protocol, tmp_path / "centred", "pixels", tmp_path / "data", PixelEmbedder(16),
                            progress=False, preprocessor=NoFaceIn())  # the default: --no-face center
    assert report["images_failed"] == 0 and report["pairs_skipped"] == 0
    assert report["photos"]["no_face_scored_from_centre"] == 1
    assert "no face found (scored from the centre): 1" in (tmp_path / "centred" / "report.md").read_text()


PHOTO_COMMANDS = {"faceid evaluate", "faceid enroll", "faceid identify", "faceid verify", "faceid gallery calibrate",
                  "faceid gallery tune", "faceid align", "faceid embed", "faceid demo"}


def test_every_command_that_takes_photos_takes_select_with_the_subject_rule_by_default():
    parsers = {sub.prog: sub for sub in command_parsers(build_parser())}
    assert PHOTO_COMMANDS <= set(parsers)
    for prog in PHOTO_COMMANDS:
        (select,) = [a for a in parsers[prog]._actions if "--select" in a.option_strings]
        assert {"subject", "largest", "best", "center"} <= set(select.choices), prog
        assert select.default in ("subject", None) and "subject" in select.help, prog
    for prog in set(parsers) - PHOTO_COMMANDS:
        assert not any("--select" in a.option_strings for a in parsers[prog]._actions), prog


def test_the_gallery_commands_open_their_gallery_with_the_named_selection(monkeypatch, tmp_path):
    from faceid.commands.options import open_gallery_from
    from faceid.gallery import session

    opened = []
    def opening(*args, select=None, **kwargs):
        opened.append(select)
        return SimpleNamespace(threshold_override=None)

    monkeypatch.setattr(session, "open_gallery", opening)
    for argv in (["enroll", "g", "x.jpg", "--identity", "a"], ["identify", "g", "x.jpg"],
                 ["verify", "g", "x.jpg", "--identity", "a"], ["gallery", "calibrate", "g", "--data", "d"],
                 ["gallery", "tune", "g", "--probes", "p"]):
        open_gallery_from(build_parser().parse_args([*argv, "--select", "best"]))
        open_gallery_from(build_parser().parse_args(argv))
    assert opened == ["best", None] * 5  # None: the subject rule, and ambiguous photos refused at enrolment
