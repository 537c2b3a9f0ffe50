"""`faceid serve GALLERY`: the gallery over HTTP (FastAPI + uvicorn).

Endpoints: GET /health, GET /identities, POST /identities/{name} (enroll images), DELETE
/identities/{name}, POST /verify, POST /identify; the OpenAPI spec is at /openapi.json and the
interactive docs at /docs. With an API key set, every endpoint needs the header `X-API-Key`, except
/health, which without it says only `{"status": "ok"}`.

The event loop only parses requests: decoding, detection, embedding and search run in worker
threads (`gallery.service.workers`), concurrent identifications are batched, and writers queue for
the gallery's writer lock. Bad input answers 4xx with the reason, never 500: 404 for an identity
that is not enrolled, 408 for a body that stalls, 413 for a body (or image, in pixels) too large,
422 for anything else wrong with the request. `serve(..., workers=N)` runs N processes on one gallery.
"""

import hmac
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

from faceid.data.images import DEFAULT_MAX_PIXELS
from faceid.gallery.gallery import Gallery
from faceid.gallery.names import validate_identity_name
from faceid.gallery.photos import identify_photo
from faceid.gallery.records import GalleryError, NotEnrolled
from faceid.gallery.samples.kept_images import keep_bytes, keeps_images
from faceid.gallery.service.limits import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_READ_TIMEOUT_S, BodyLimits
from faceid.gallery.service.workers import GalleryWorkers, IdentifyBatcher
from faceid.gallery.threshold_policy import DEFAULT_POLICY, check_policy, check_threshold

SETTINGS_VARIABLE = "FACEID_SERVE_SETTINGS"


def create_app(gallery: Gallery, api_key: str | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
               *, max_pixels: int = DEFAULT_MAX_PIXELS, threshold_override: str = DEFAULT_POLICY,
               threads: int = 4, batch_size: int = 32, batch_wait_ms: float = 5.0,
               read_timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> FastAPI:
    """The app serving `gallery` (its path, embedder and preprocessor: each worker thread opens its own)."""
    check_policy(threshold_override)
    workers = GalleryWorkers(gallery, threads, max_pixels, threshold_override)
    batcher = IdentifyBatcher(workers, batch_size, batch_wait_ms)
    app = FastAPI(title="faceid gallery", version="1", on_shutdown=[workers.close],
                  description="Enroll identities, verify (1:1) and identify (1:N).")
    app.state.workers, app.state.batcher = workers, batcher

    def key_ok(request: Request) -> bool:
        return api_key is None or hmac.compare_digest(request.headers.get("x-api-key", ""), api_key)

    def authorised(request: Request) -> None:
        if not key_ok(request):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    async def prepared(upload: UploadFile, number: int = 0, keep: bool = False):
        data, name = await upload.read(), upload.filename or f"upload {number}"

        def prepare(g: Gallery):
            crop = g.resolver.prepare(data, name)
            if keep and keeps_images(g):  # an enrolled upload is kept, so that it can be re-embedded
                return replace(crop, source=keep_bytes(g, data, crop.file_hash, Path(name).suffix))
            return crop

        return await workers.read(prepare)

    @app.exception_handler(GalleryError)
    async def gallery_error(_, error: GalleryError):
        return JSONResponse({"detail": str(error)}, status_code=404 if isinstance(error, NotEnrolled) else 422)

    guarded = [Depends(authorised)]

    @app.get("/health")
    async def health(request: Request) -> dict:
        if api_key is None or not key_ok(request):
            return {"status": "ok"}
        identities, templates = await workers.read(_counts)
        return {"status": "ok", "identities": identities, "templates": templates}

    @app.get("/identities", dependencies=guarded)
    async def identities() -> list[dict]:
        return await workers.read(lambda g: g.list())

    @app.post("/identities/{name}", dependencies=guarded)
    async def enroll(name: str, files: Annotated[list[UploadFile], File(description="face images")]) -> dict:
        name = validate_identity_name(name)
        crops = [await prepared(upload, number, keep=True) for number, upload in enumerate(files)]
        samples = await workers.read(lambda g: g.resolver.embed_prepared(crops))
        return await workers.write(lambda g: g.enroll(name, samples))

    @app.delete("/identities/{name}", dependencies=guarded)
    async def remove(name: str) -> dict:
        return {"removed": name, "templates": await workers.write(lambda g: g.remove(name))}

    @app.post("/verify", dependencies=guarded)
    async def verify(identity: Annotated[str, Form()], file: Annotated[UploadFile, File()],
                     threshold: Annotated[float | None, Form()] = None) -> dict:
        threshold = None if threshold is None else check_threshold(threshold)
        crop = await prepared(file)
        decision = await workers.read(lambda g: g.verify(g.resolver.embed_prepared([crop])[0], identity, threshold))
        return decision.__dict__

    @app.post("/identify", dependencies=guarded)
    async def identify(file: Annotated[UploadFile, File()], k: Annotated[int, Form(ge=1, le=100)] = 5,
                       threshold: Annotated[float | None, Form()] = None, all_faces: bool = False,
                       closed_set: Annotated[bool, Form()] = False) -> dict | list:
        threshold = None if threshold is None else check_threshold(threshold)
        if all_faces:  # every face of the photo: [{box, landmarks, score, identity, candidates, threshold...}]
            data, name = await file.read(), file.filename or "upload"
            matches = await workers.read(lambda g: identify_photo(g, data, k, threshold, name, closed_set))
            return [match.to_dict() for match in matches]
        result = await batcher.identify(await prepared(file), k, threshold, closed_set)
        return result.to_dict()

    app.add_middleware(BodyLimits, max_bytes=max_request_bytes, read_timeout_s=read_timeout_s)
    return app


def _counts(gallery: Gallery) -> tuple[int, int]:
    with gallery.reading() as store:
        return store.counts()


def app_from_environment() -> FastAPI:
    """The app factory of each `serve(workers=N)` process: settings come from $FACEID_SERVE_SETTINGS."""
    from faceid.gallery.session import open_gallery

    settings = json.loads(os.environ[SETTINGS_VARIABLE])
    opened = settings.pop("open")
    return create_app(open_gallery(opened["path"], opened["model"], opened["aligned"], opened["device"]), **settings)


def serve(gallery: Gallery, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, *, workers: int = 1, device: str = "auto",
          **options) -> None:
    """Serve until interrupted; `options` are `create_app`'s. With `workers` > 1, that many processes,
    each opening the gallery itself, share the port (uvicorn's workers)."""
    import uvicorn

    if workers <= 1:
        uvicorn.run(create_app(gallery, api_key, max_request_bytes, **options), host=host, port=port)
        return
    if (reason := gallery.index.capabilities.single_process) is not None:
        raise GalleryError(f"{gallery.path} cannot be served by several processes: {reason}; serve it with "
                           "--workers 1")
    opened = {"path": str(gallery.path), "model": gallery.setting("model"), "aligned": gallery.setting("aligned"),
              "device": device}
    os.environ[SETTINGS_VARIABLE] = json.dumps({"open": opened, "api_key": api_key,
                                                "max_request_bytes": max_request_bytes, **options})
    uvicorn.run("faceid.gallery.service.app:app_from_environment", factory=True, workers=workers, host=host, port=port)
