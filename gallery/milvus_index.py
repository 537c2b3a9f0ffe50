"""The Milvus backend of the gallery's vector index, behind the same interface as `VectorIndex`.

Milvus Lite (`pip install milvus-lite`: a local file, no server) for tests and small deployments;
a Milvus cluster URI (`http://host:19530`) in production. SQLite stays the source of truth: the
collection is checked against it when the gallery opens and rebuilt from it when they disagree, so
the crash-safety argument of the FAISS backend holds here too. Metric: inner product on unit vectors.
"""

import numpy as np

COLLECTION = "faceid_templates"
QUERY_PAGE = 10_000


class MilvusIndex:
    factory = "milvus"
    exact = False

    def __init__(self, dim: int, uri: str, index_type: str = "FLAT", search_parameters: dict | None = None):
        from pymilvus import MilvusClient

        self.dim, self.uri, self.index_type = dim, uri, index_type
        self.search_parameters = dict(search_parameters or {})
        try:
            self.client = MilvusClient(uri)
        except Exception as error:
            raise ValueError(f"cannot open Milvus at {uri}: {error}") from None
        if self.client.has_collection(COLLECTION):
            self.client.load_collection(COLLECTION)
        self._count = None

    def _create(self) -> None:
        from pymilvus import DataType

        if self.client.has_collection(COLLECTION):
            self.client.drop_collection(COLLECTION)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.index_type, metric_type="IP")
        self.client.create_collection(COLLECTION, schema=schema, index_params=index)

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._create()
        self.add(ids, vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> bool:
        if not self.client.has_collection(COLLECTION):
            self._create()
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        for start in range(0, len(vectors), QUERY_PAGE):
            rows = [{"id": int(i), "vector": v.tolist()}
                    for i, v in zip(ids[start:start + QUERY_PAGE], vectors[start:start + QUERY_PAGE], strict=True)]
            self.client.insert(COLLECTION, rows)
        self._count = None
        return True

    def remove(self, ids: np.ndarray) -> bool:
        if len(ids):
            self.client.delete(COLLECTION, ids=[int(i) for i in ids])
        self._count = None
        return True

    def stored_ids(self) -> np.ndarray:
        if not self.client.has_collection(COLLECTION):
            return np.zeros(0, np.int64)
        iterator = self.client.query_iterator(COLLECTION, batch_size=QUERY_PAGE, filter="id >= 0", output_fields=["id"])
        ids = []
        while True:
            page = iterator.next()
            if not page:
                break
            ids.extend(row["id"] for row in page)
        iterator.close()
        return np.array(sorted(ids), np.int64)

    def __len__(self) -> int:
        if self._count is None:
            self._count = len(self.stored_ids())
        return self._count

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        k = min(k, len(self))
        if k == 0 or not len(queries):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        hits = self.client.search(COLLECTION, data=queries.tolist(), limit=k, output_fields=[],
                                  search_params={"metric_type": "IP", "params": self.search_parameters})
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, found in enumerate(hits):
            for column, hit in enumerate(found[:k]):
                scores[row, column], ids[row, column] = hit["distance"], hit["id"]
        return scores, ids

    def close(self) -> None:
        self.client.close()
        if not self.uri.startswith(("http://", "https://", "tcp://")):  # Milvus Lite: stop its local server,
            from milvus_lite.server_manager import server_manager_instance  # releasing the file for other processes

            server_manager_instance.release_server(self.uri)

    def save(self) -> None:
        """Persist the changes (Milvus keeps its own index: no snapshot file)."""
        self.client.flush(COLLECTION)

    def matches(self, expected_ids: np.ndarray) -> bool:
        """Whether the collection holds exactly `expected_ids` (checked when the gallery opens)."""
        return np.array_equal(self.stored_ids(), np.sort(np.asarray(expected_ids, np.int64)))

    def content(self) -> tuple[np.ndarray, None]:
        """(stored ids, None): vectors are not read back from Milvus for checking."""
        return self.stored_ids(), None
