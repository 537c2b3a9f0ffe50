"""A Milvus backend that cannot be reached or read at open: SQLite holds every vector, so a collection Milvus
cannot load is rebuilt from it, an unusable Milvus Lite directory is kept aside and started afresh (a server's
is never touched but for the gallery's own collection), and a refused connect is tried again before a clear error."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from faceid.gallery.gallery import Gallery
from tests.gallery.conftest import MILVUS_MISSING
from tests.gallery.doubles import embeddings_gallery, synthetic_people
from tests.gallery.test_milvus import DIM

pytestmark = pytest.mark.skipif(MILVUS_MISSING, reason="milvus-lite is not installed (pip install -e '.[milvus]')")


def _enrolled(path, **options):
    people, centres = synthetic_people(5)
    with embeddings_gallery(path, "milvus", **options) as gallery:
        gallery.enroll_many(people)
        return gallery.backend, centres


def _all_found(path, centres):
    reopened = Gallery(path)
    try:
        found = [reopened.identify(c, k=1, closed_set=True).identity for c in centres]
        assert found == [f"p{i:03d}" for i in range(len(centres))]
        assert len(reopened.index) == 10 and reopened.check()["consistent"]
        return reopened.stats()["index"]["rebuilt_reason"]
    finally:
        reopened.close()


def test_a_milvus_lite_collection_truncated_by_a_crash_is_rebuilt_from_sqlite(tmp_path):
    """A writer killed while Milvus Lite wrote an index file leaves it truncated: loading it raised
    'No data left in file' from the gallery's open."""
    backend, centres = _enrolled(tmp_path / "g")
    for index_file in Path(backend["uri"]).glob(f"collections/{backend['collection']}/partitions/*/indexes/*.idx"):
        index_file.write_bytes(index_file.read_bytes()[:7])
    assert "Milvus cannot load the collection" in _all_found(tmp_path / "g", centres)
    assert _all_found(tmp_path / "g", centres) is None  # rebuilt once, for good


def test_an_unusable_milvus_lite_directory_is_kept_aside_and_the_gallery_rebuilt(tmp_path, caplog):
    backend, centres = _enrolled(tmp_path / "g")
    shutil.rmtree(backend["uri"])
    Path(backend["uri"]).write_text("not a Milvus Lite directory")  # its server cannot start
    assert "the Milvus Lite directory was unusable" in _all_found(tmp_path / "g", centres)
    kept = list(tmp_path.glob("g/milvus.db.damaged-*"))
    assert len(kept) == 1 and kept[0].read_text() == "not a Milvus Lite directory" and str(kept[0]) in caplog.text


def test_a_milvus_lite_collection_that_cannot_even_be_dropped_gets_a_new_directory(tmp_path, monkeypatch):
    from pymilvus import MilvusClient

    _, centres = _enrolled(tmp_path / "g")
    load, drop = MilvusClient.load_collection, MilvusClient.drop_collection
    with monkeypatch.context() as patch:  # the directory is damaged until it is set aside
        for name, method in (("load_collection", load), ("drop_collection", drop)):
            patch.setattr(MilvusClient, name, lambda self, *a, method=method, **k: method(self, *a, **k)
                          if list(tmp_path.glob("g/milvus.db.damaged-*")) else _refuse())
        assert "No data left in file" in _all_found(tmp_path / "g", centres)
    assert len(list(tmp_path.glob("g/milvus.db.damaged-*"))) == 1


def _refuse(*args, **kwargs):
    from pymilvus import MilvusException

    raise MilvusException(code=1, message="No data left in file")


def test_a_damaged_collection_on_a_milvus_server_is_rebuilt_and_nothing_else_is_touched(tmp_path, monkeypatch,
                                                                                       milvus_server):
    from pymilvus import MilvusClient

    from faceid.gallery.records import GalleryError

    neighbour = embeddings_gallery(tmp_path / "other", "milvus", backend_options={"uri": milvus_server})
    neighbour.enroll("neighbour", [np.ones(DIM) / np.sqrt(DIM)])
    backend, centres = _enrolled(tmp_path / "g", backend_options={"uri": milvus_server})
    load, drop, dropped = MilvusClient.load_collection, MilvusClient.drop_collection, []
    with monkeypatch.context() as patch:  # the collection is damaged until it is dropped
        patch.setattr(MilvusClient, "load_collection", lambda self, name, **k: _refuse() if name ==
                      backend["collection"] and not dropped else load(self, name, **k))
        patch.setattr(MilvusClient, "drop_collection", lambda self, name, **k: dropped.append(name) or drop(self, name))
        assert "Milvus cannot load the collection" in _all_found(tmp_path / "g", centres)
        assert dropped == [backend["collection"]]
        dropped.clear()
        patch.setattr(MilvusClient, "drop_collection", _refuse)
        with pytest.raises(GalleryError, match=f"collection {backend['collection']} at {milvus_server} cannot be "
                                               "loaded or dropped"):
            Gallery(tmp_path / "g")
    assert neighbour.identify(np.ones(DIM), k=1, closed_set=True).identity == "neighbour" and len(neighbour.index) == 1
    neighbour.close()
    assert _all_found(tmp_path / "g", centres) is None and not list(tmp_path.glob("**/*.damaged-*"))


def test_opening_retries_a_refused_connect_then_names_the_uri(tmp_path, monkeypatch, milvus_server):
    import pymilvus

    from faceid.gallery.index import milvus_index
    from faceid.gallery.records import GalleryError

    monkeypatch.setattr(milvus_index, "CONNECT_BACKOFF", 0.01)
    backend, centres = _enrolled(tmp_path / "g", backend_options={"uri": milvus_server})
    real, attempts = pymilvus.MilvusClient, []

    def flaky(uri, **kwargs):
        attempts.append(uri)
        if len(attempts) <= failures:
            raise pymilvus.MilvusException(code=2, message=f"Fail connecting to server on {uri}: server unavailable")
        return real(uri, **kwargs)

    monkeypatch.setattr(pymilvus, "MilvusClient", flaky)
    failures = milvus_index.CONNECT_ATTEMPTS - 1
    assert _all_found(tmp_path / "g", centres) is None and len(attempts) == milvus_index.CONNECT_ATTEMPTS
    attempts.clear()
    failures = milvus_index.CONNECT_ATTEMPTS
    with pytest.raises(GalleryError, match=f"cannot open Milvus at {milvus_server} \\(tried 4 times\\): .*unavailable"):
        Gallery(tmp_path / "g")
