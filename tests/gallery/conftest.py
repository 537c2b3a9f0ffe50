"""Fixtures shared by the gallery tests: the vector backend a test runs on, and a Milvus server for the tests
where several processes share one gallery (Milvus Lite admits one process at a time)."""

import importlib.util
import logging

import pytest

MILVUS_MISSING = importlib.util.find_spec("milvus_lite") is None
MILVUS = pytest.param("milvus", marks=pytest.mark.skipif(MILVUS_MISSING, reason="milvus-lite is not installed "
                                                         "(pip install -e '.[milvus]')"))  # a parameter value


@pytest.fixture(params=["faiss", MILVUS])
def backend(request) -> str:
    """Every test taking this fixture runs against both vector backends."""
    return request.param


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory) -> str:
    """The URI of a Milvus Lite server shared by the session's tests (each gallery has its own collection)."""
    if MILVUS_MISSING:
        pytest.skip("milvus-lite is not installed (pip install -e '.[milvus]')")
    from milvus_lite.adapter.grpc.server import start_server_in_thread

    server, database, port = start_server_in_thread(str(tmp_path_factory.mktemp("milvus-server")))
    yield f"http://127.0.0.1:{port}"
    server.stop(grace=1)
    database.close()


@pytest.fixture(autouse=True, scope="session")
def _quiet_pymilvus():
    """pymilvus warns at every query iterator that Milvus Lite gives no server timestamp."""
    logging.getLogger("pymilvus").setLevel(logging.ERROR)


@pytest.fixture
def shared_backend(backend, request) -> dict:
    """`Gallery.create` options for a gallery that several processes open at once, on each backend: Milvus
    through a server (Milvus Lite admits one process at a time)."""
    if backend == "faiss":
        return {"backend": "faiss"}
    return {"backend": "milvus", "milvus_uri": request.getfixturevalue("milvus_server")}
