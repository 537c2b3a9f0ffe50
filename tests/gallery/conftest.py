"""Fixtures shared by the gallery tests: the vector backend a test runs on, and a Milvus server for the tests
where several processes share one gallery (Milvus Lite admits one process at a time)."""

import importlib.util
import logging

import pytest

from tests.waiting import TIMEOUT, WaitTimeout, wait_for

MILVUS_MISSING = importlib.util.find_spec("milvus_lite") is None
MILVUS = pytest.param("milvus", marks=pytest.mark.skipif(MILVUS_MISSING, reason="milvus-lite is not installed "
                                                         "(pip install -e '.[milvus]')"))  # a parameter value


@pytest.fixture(params=["faiss", MILVUS])
def backend(request) -> str:
    """Every test taking this fixture runs against both vector backends."""
    return request.param


# The ping policy of a Milvus server (its keepalive EnforcementPolicy: MinTime 5 s, PermitWithoutStream). pymilvus
# clients ping every 10 s, idle or not; gRPC's default server policy (one ping per 5 minutes, none without a call,
# 2 strikes) answers them with GOAWAY too_many_pings, which fails the calls in flight on that connection.
SERVER_OPTIONS = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20),
                  ("grpc.keepalive_permit_without_calls", 1),
                  ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000), ("grpc.http2.max_ping_strikes", 0)]
SERVER_READY_SECONDS = TIMEOUT


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory) -> str:
    """The URI of a Milvus Lite server shared by the session's tests (each gallery has its own collection), once
    it answers a client."""
    if MILVUS_MISSING:
        pytest.skip("milvus-lite is not installed (pip install -e '.[milvus]')")
    from concurrent import futures

    import grpc
    from milvus_lite.adapter.grpc.servicer import MilvusServicer
    from milvus_lite.db import MilvusLite
    from pymilvus import MilvusClient
    from pymilvus.grpc_gen import milvus_pb2_grpc

    database = MilvusLite(str(tmp_path_factory.mktemp("milvus-server")))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=SERVER_OPTIONS)
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(database), server)
    uri = f"http://127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    problems = []

    def answers() -> bool:
        try:
            client = MilvusClient(uri, timeout=5)
            client.list_collections()
            client.close()
            return True
        except Exception as error:  # not accepting clients yet
            problems[:] = [error]
            return False

    try:
        wait_for(answers, SERVER_READY_SECONDS, interval=0.2,
                 what=lambda: f"the test Milvus server at {uri} to accept a client (the last refusal: {problems})")
    except WaitTimeout:
        server.stop(grace=0)
        database.close()
        raise
    yield uri
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
    return {"backend": "milvus", "backend_options": {"uri": request.getfixturevalue("milvus_server")}}
