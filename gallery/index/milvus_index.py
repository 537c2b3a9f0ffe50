"""The Milvus backend of the gallery's vector index, behind the same interface as `VectorIndex`.

Milvus Lite (`pip install milvus-lite`: a local directory, one process at a time) for tests and small
deployments; a Milvus server URI (`http://host:19530`) when several processes share the gallery. Each
gallery has a collection of its own (named in its backend description), so galleries can share a server.
SQLite stays the source of truth: the collection records the store generation whose changes it holds
(`synced`), and a collection that is behind (a writer died between its commit and the collection's
update) or holds other ids is brought back to the store when the gallery opens (`gallery.index.live_index`).
Metric: inner product on unit vectors.

A refused connect (a server starting, restarting or busy) is tried `CONNECT_ATTEMPTS` times before the open fails
with a `GalleryError` naming the URI. A collection Milvus cannot load (a process killed while Milvus Lite wrote
it leaves a truncated file) is `damage`: the gallery drops it and rebuilds it from SQLite under the writer lock.
A Milvus Lite directory that cannot be used at all (its server cannot start, or the damaged collection cannot
even be dropped) is moved aside, kept under a timestamped name, and started afresh; on a Milvus server nothing
is ever moved or deleted but the gallery's own collection.
"""

import logging
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from faceid.gallery.index.backend import BACKENDS, BackendCapabilities
from faceid.gallery.records import GalleryError

COLLECTION = "faceid_templates"  # the collection of galleries made before each had its own
QUERY_PAGE = 10_000
MAX_RESULTS = 16_384  # Milvus refuses a search for more results than this (its topk limit)
SYNCED = "faceid_generation"  # collection property: the store generation the collection holds
INDEX_TYPES = ("FLAT", "AUTOINDEX", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8")
_lite_users: dict[str, int] = {}  # Milvus Lite path -> open MilvusIndex objects of this process using it
_lite_lock = threading.Lock()
CONNECT_ATTEMPTS = 4
CONNECT_BACKOFF = 0.25  # seconds before the second attempt, doubled before each next one
log = logging.getLogger("faceid.gallery")


def milvus_index_type(index: str) -> str:
    """The Milvus index type for a gallery's `index` option: Flat (exact), auto (Milvus AUTOINDEX: Milvus
    picks the index and its parameters), or a Milvus index type by name. FAISS factory strings are refused."""
    if index == "Flat":
        return "FLAT"
    if index == "auto":
        return "AUTOINDEX"
    if index.upper() in INDEX_TYPES:
        return index.upper()
    raise ValueError(f"index {index!r} is not available with the milvus backend: give Flat (exact), auto "
                     f"(Milvus AUTOINDEX) or a Milvus index type ({', '.join(INDEX_TYPES)}); FAISS factory "
                     "strings need the faiss backend")


def is_milvus_lite(uri: str) -> bool:
    """A local Milvus Lite directory (one process at a time), not a server URI."""
    return not uri.startswith(("http://", "https://", "tcp://", "grpc://"))


def connect(uri: str):
    """A `MilvusClient` for `uri`, a failed connect tried `CONNECT_ATTEMPTS` times with a doubling backoff (a
    transient refusal does not fail the open); then a `GalleryError` naming the URI."""
    from pymilvus import MilvusClient

    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return MilvusClient(uri)
        except Exception as error:  # pymilvus raises MilvusException, grpc errors and OSError alike
            problem = error
        if attempt + 1 < CONNECT_ATTEMPTS:
            time.sleep(CONNECT_BACKOFF * 2 ** attempt)
    raise GalleryError(f"cannot open Milvus at {uri} (tried {CONNECT_ATTEMPTS} times): {problem}")


def lite_start_problem(uri: str) -> Exception | None:
    """Why a Milvus Lite directory cannot be opened: None if it can now. Another process holding it is not
    damage: a `GalleryError` saying so (pymilvus reports every failure alike, so the directory is opened here)."""
    from milvus_lite.db import MilvusLite
    from milvus_lite.exceptions import DataDirLockedError

    try:
        MilvusLite(uri).close()
    except DataDirLockedError:
        raise GalleryError(f"cannot open Milvus at {uri}: another process has this Milvus Lite directory open (one "
                           "process at a time may: close it there, or re-create the gallery on a Milvus "
                           "server)") from None
    except Exception as error:
        return error
    return None


def set_aside(uri: str, problem) -> str:
    """Move an unusable Milvus Lite directory (or file) aside, kept as `<uri>.damaged-<time>`, saying so."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = f"{uri}.damaged-{stamp}"
    for n in range(2, 1000):
        if not os.path.exists(target):
            break
        target = f"{uri}.damaged-{stamp}-{n}"
    os.rename(uri, target)
    log.warning("Milvus Lite cannot use %s (%s): moved it aside to %s and started a new one; the gallery's "
                "collection is rebuilt from gallery.db", uri, problem, target)
    return target


@BACKENDS.register("milvus")
class MilvusIndex:
    """A `SharedBackend` (`gallery.index.backend`): the gallery's vectors in a Milvus collection of its own."""

    def __init__(self, dim: int, uri: str, index_type: str = "FLAT", search_parameters: dict | None = None,
                 collection: str = COLLECTION):
        self.dim, self.uri, self.index_type, self.collection = dim, uri, index_type, collection
        self.factory = f"Milvus {index_type}"
        self.search_parameters = dict(search_parameters or {})
        self.damage: str | None = None  # why the collection must be rebuilt, when Milvus cannot load it
        self.moved_aside: str | None = None  # the unusable Milvus Lite directory this open replaced, and why
        try:
            self.client = connect(uri)
        except GalleryError:
            if not is_milvus_lite(uri) or (problem := lite_start_problem(uri)) is None:
                raise
            self.moved_aside = f"the Milvus Lite directory was unusable ({problem}): moved to {set_aside(uri, problem)}"
            self.client = connect(uri)
        if is_milvus_lite(uri):
            with _lite_lock:
                _lite_users[uri] = _lite_users.get(uri, 0) + 1
        self._load()

    @classmethod
    def describe(cls, folder: Path, dim: int, index: str, uri: str | None = None) -> dict:
        """A new gallery's collection: on the Milvus server `uri`, or (default) in a Milvus Lite directory inside
        the gallery `folder`; its own collection name; `index` as a Milvus index type (`milvus_index_type`)."""
        return {"uri": uri or str(Path(folder).resolve() / "milvus.db"), "collection": f"faceid_{uuid.uuid4().hex}",
                "index_type": milvus_index_type(index)}

    @classmethod
    def open(cls, dim: int, description: dict, settings, gpu: bool = False) -> "MilvusIndex":
        if gpu:
            raise GalleryError("gpu=True is for FAISS galleries: Milvus runs its searches on its own servers")
        return cls(dim, description["uri"], description.get("index_type", "FLAT"), settings.get("search_parameters"),
                   description.get("collection", COLLECTION))

    @property
    def capabilities(self) -> BackendCapabilities:
        lite = ("a Milvus Lite directory admits one process at a time (re-create the gallery on a Milvus server "
                "for several)") if is_milvus_lite(self.uri) else None
        return BackendCapabilities(snapshots=False, max_results=MAX_RESULTS, single_process=lite)

    def _load(self) -> None:
        """Load the collection, if there is one; one Milvus cannot read is recorded in `damage` (`synced` is then
        unknown: the gallery rebuilds it). Tried again at each `synced`: another process may have rebuilt it."""
        from pymilvus import MilvusException

        try:
            if self.client.has_collection(self.collection):
                self.client.load_collection(self.collection)
            self.damage = None
        except MilvusException as error:
            if self.damage is None:
                log.warning("Milvus cannot load the collection %s at %s (%s): it is rebuilt from gallery.db",
                            self.collection, self.uri, error.message)
            self.damage = f"Milvus cannot load the collection {self.collection} at {self.uri}: {error.message}"

    def _drop(self) -> None:
        """Drop the collection (a damaged one too). If Milvus cannot, a Milvus Lite directory is moved aside and
        started afresh; a server's is left as it is, and the open fails naming it."""
        from pymilvus import MilvusException

        try:
            if self.damage is not None or self.client.has_collection(self.collection):
                self.client.drop_collection(self.collection)
            return
        except MilvusException as error:
            problem = error
        if not is_milvus_lite(self.uri):
            raise GalleryError(f"the Milvus collection {self.collection} at {self.uri} cannot be loaded or dropped "
                               f"({problem}): repair or drop it on the server; the gallery then rebuilds it from "
                               "gallery.db") from None
        with _lite_lock:
            if _lite_users.get(self.uri, 0) > 1:
                raise GalleryError(f"the Milvus Lite directory {self.uri} is damaged ({problem}): close the other "
                                   "galleries of this process using it, then open this one again") from None
        self.client.close()
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(self.uri)
        set_aside(self.uri, problem)
        self.client = connect(self.uri)

    def _create(self) -> None:
        from pymilvus import DataType

        self._drop()
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.index_type, metric_type="IP")
        # Strong: a search sees every write acknowledged before it (another process reads right after a commit)
        self.client.create_collection(self.collection, schema=schema, index_params=index, consistency_level="Strong")
        self.damage = self.moved_aside = None

    @property
    def rebuild_reason(self) -> str:
        """Why the gallery rebuilds this collection from SQLite (`LiveIndex.repair_shared`)."""
        return self.damage or self.moved_aside or "the Milvus collection does not hold the store's templates"

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._create()
        self.add(ids, vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> bool:
        """Insert or overwrite (upsert: adding an id twice, as a repeated replay does, keeps one row)."""
        if not self.client.has_collection(self.collection):
            self._create()
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        for start in range(0, len(vectors), QUERY_PAGE):
            rows = [{"id": int(i), "vector": v.tolist()}
                    for i, v in zip(ids[start:start + QUERY_PAGE], vectors[start:start + QUERY_PAGE], strict=True)]
            self.client.upsert(self.collection, rows)
        return True

    def remove(self, ids: np.ndarray) -> bool:
        if len(ids) and self.client.has_collection(self.collection):
            self.client.delete(self.collection, ids=[int(i) for i in ids])
        return True

    def _rows(self, fields: list[str]) -> list[dict]:
        if not self.client.has_collection(self.collection):
            return []
        iterator = self.client.query_iterator(self.collection, batch_size=QUERY_PAGE, filter="id >= 0",
                                              output_fields=fields)
        rows = []
        while page := iterator.next():
            rows.extend(page)
        iterator.close()
        return rows

    def stored_ids(self) -> np.ndarray:
        return np.array(sorted(row["id"] for row in self._rows(["id"])), np.int64)

    @property
    def ids(self) -> np.ndarray:
        return self.stored_ids()

    def __len__(self) -> int:
        """Counted by Milvus at each call: other processes and galleries of this one change the collection."""
        if not self.client.has_collection(self.collection):
            return 0
        return int(self.client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k best per query, k capped at `MAX_RESULTS` (the caller says what that cuts)."""
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        k = min(k, len(self), MAX_RESULTS)
        if k == 0 or not len(queries):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        hits = self.client.search(self.collection, data=queries.tolist(), limit=k, output_fields=[],
                                  search_params={"metric_type": "IP", "params": self.search_parameters})
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, found in enumerate(hits):
            for column, hit in enumerate(found[:k]):
                scores[row, column], ids[row, column] = hit["distance"], hit["id"]
        return scores, ids

    def close(self) -> None:
        """Close the client; the last user of a Milvus Lite path in this process also stops its local server,
        releasing the directory for other processes (earlier ones keep using it)."""
        self.client.close()
        if not is_milvus_lite(self.uri):
            return
        with _lite_lock:
            _lite_users[self.uri] -= 1
            last = _lite_users[self.uri] == 0
            if last:
                del _lite_users[self.uri]
        if last:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)

    def save(self) -> None:
        """Persist the changes (Milvus keeps its own index: no snapshot file)."""
        self.client.flush(self.collection)

    def synced(self) -> int | None:
        """The store generation the collection holds (`mark`), None if unknown (no collection, never marked, or
        one Milvus cannot load: `damage`)."""
        if self.damage is not None:
            self._load()
        if self.damage is not None or not self.client.has_collection(self.collection):
            return None
        value = self.client.describe_collection(self.collection).get("properties", {}).get(SYNCED)
        return None if value is None else int(value)

    def mark(self, generation: int) -> None:
        """Record that the collection holds the changes of every generation up to `generation`."""
        self.save()
        self.client.alter_collection_properties(self.collection, properties={SYNCED: str(int(generation))})

    def matches(self, expected_ids: np.ndarray) -> bool:
        """Whether the collection holds exactly `expected_ids` (checked when the gallery opens)."""
        return np.array_equal(self.stored_ids(), np.sort(np.asarray(expected_ids, np.int64)))

    def content(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) read back from Milvus, for `gallery check` to compare vector by vector."""
        rows = self._rows(["id", "vector"])
        return (np.array([row["id"] for row in rows], np.int64),
                np.array([row["vector"] for row in rows], np.float32).reshape(-1, self.dim))
