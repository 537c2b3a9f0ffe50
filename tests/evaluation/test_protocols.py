import numpy as np
import pytest

from faceid.data.folder import list_identity_folder
from faceid.data.protocols import (
    ProtocolError,
    build_identification_split,
    build_verification_pairs,
    read_csv_pairs,
    read_lfw_pairs,
)


def _lfw_tree(root, names=("Ann", "Bob", "Cid", "Dee")):
    for name in names:
        (root / name).mkdir(parents=True)
        for k in (1, 2, 3):
            (root / name / f"{name}_{k:04d}.jpg").write_bytes(b"x")


def test_lfw_pairs_both_line_types_and_folds(tmp_path):
    _lfw_tree(tmp_path / "lfw")
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\nCid 2 3\nCid 1 Dee 2\n")
    protocol = read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")
    assert protocol.is_same.tolist() == [True, False, True, False]
    assert protocol.fold.tolist() == [0, 0, 1, 1]
    names = [(protocol.paths[a].name, protocol.paths[b].name)
             for a, b in zip(protocol.first, protocol.second, strict=True)]
    assert names[0] == ("Ann_0001.jpg", "Ann_0002.jpg")
    assert names[1] == ("Ann_0001.jpg", "Bob_0003.jpg")


def test_malformed_line_names_its_number(tmp_path):
    _lfw_tree(tmp_path / "lfw")
    (tmp_path / "pairs.txt").write_text("1 1\nAnn 1 2\nAnn 1 Bob 2 3\n")
    with pytest.raises(ProtocolError, match=r"pairs.txt:3: expected"):
        read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")
    (tmp_path / "pairs.txt").write_text("1 1\nAnn 1 two\nAnn 1 Bob 2\n")
    with pytest.raises(ProtocolError, match=r"pairs.txt:2: image number must be an integer"):
        read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")
    (tmp_path / "pairs.txt").write_text("ten 300\n")
    with pytest.raises(ProtocolError, match=r"pairs.txt:1: header"):
        read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")
    (tmp_path / "pairs.txt").write_text("2 1\nAnn 1 2\nAnn 1 Bob 2\n")
    with pytest.raises(ProtocolError, match="announces 2 folds"):
        read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")


def test_missing_images_listed_in_one_error_or_skipped(tmp_path):
    _lfw_tree(tmp_path / "lfw")
    (tmp_path / "pairs.txt").write_text("1 2\nAnn 1 9\nBob 1 2\nAnn 1 Zed 1\nCid 1 Dee 1\n")
    with pytest.raises(ProtocolError) as error:
        read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")
    message = str(error.value)
    assert "2 image(s)" in message and "Ann_0009.jpg" in message and "Zed_0001.jpg" in message
    protocol = read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw", skip_missing=True)
    assert len(protocol) == 2 and len(protocol.skipped) == 2


def test_csv_pairs(tmp_path):
    _lfw_tree(tmp_path / "lfw")
    (tmp_path / "p.csv").write_text("path1,path2,label\nAnn/Ann_0001.jpg,Ann/Ann_0002.jpg,1\n"
                                    "Ann/Ann_0001.jpg,Bob/Bob_0001.jpg,0\n")
    protocol = read_csv_pairs(tmp_path / "p.csv", tmp_path / "lfw")
    assert protocol.is_same.tolist() == [True, False] and protocol.fold is None
    (tmp_path / "bad.csv").write_text("path1,path2,label\nAnn/Ann_0001.jpg,Ann/Ann_0002.jpg,yes\n")
    with pytest.raises(ProtocolError, match="bad.csv:2: label must be 0 or 1"):
        read_csv_pairs(tmp_path / "bad.csv", tmp_path / "lfw")


def test_built_pairs_are_balanced_and_folds_identity_disjoint(small_synthetic):
    images = list_identity_folder(small_synthetic / "aligned")
    protocol = build_verification_pairs(images, folds=4, pairs_per_fold=10, seed=0)
    assert protocol.is_same.sum() == (~protocol.is_same).sum()
    identities_by_fold = {}
    for a, b, fold in zip(protocol.first, protocol.second, protocol.fold, strict=True):
        identities_by_fold.setdefault(int(fold), set()).update({images[a].identity, images[b].identity})
    folds = list(identities_by_fold.values())
    assert all(not (x & y) for i, x in enumerate(folds) for y in folds[i + 1:])
    for a, b, same in zip(protocol.first, protocol.second, protocol.is_same, strict=True):
        assert (images[a].identity == images[b].identity) == same and a != b
    again = build_verification_pairs(images, folds=4, pairs_per_fold=10, seed=0)
    assert np.array_equal(protocol.first, again.first)
    with pytest.raises(ValueError, match="identity-disjoint"):
        build_verification_pairs(images, folds=10)


def test_identification_split(small_synthetic):
    images = list_identity_folder(small_synthetic / "aligned")
    split = build_identification_split(images, unknown_fraction=0.25, gallery_per_identity=1, seed=0)
    assert len(split.enrolled) == 9
    assert len(split.gallery) == 9 and len(split.gallery) + len(split.probes) == len(images)
    non_mated = {p.identity for p in split.probes} - split.enrolled
    assert len(non_mated) == 3
