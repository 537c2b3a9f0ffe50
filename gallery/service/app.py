"""`faceid serve GALLERY`: the gallery over HTTP (FastAPI + uvicorn).

Endpoints, each answering the model of `gallery.service.schemas` that the spec names:
- GET /health: liveness; with the API key also the counts and the threshold in force (value and source);
- GET /stats: `Gallery.stats()`, the threshold in force included;
- GET /identities: every identity's summary; GET /identities/{name}: one identity with its templates (with a
  thumbnail of each image the gallery keeps); POST /identities/{name}: enroll uploaded images (duplicates are named
  by their upload's file name); DELETE /identities/{name};
- POST /verify (1:1) and POST /identify (1:N; `all_faces=true`: every face of a photo).

The OpenAPI spec is at /openapi.json. The interactive docs, /docs (Swagger UI) and /redoc, work offline: their
scripts and styles come from the installed `fastapi-offline` package, served by the app under /static-offline-docs.
With an API key set, every endpoint needs the header `X-API-Key` (the spec's `APIKeyHeader` security scheme, so the
docs' Authorize button sends it), except /health, which without it says only `{"status": "ok"}`.

The event loop only parses requests: decoding, detection, embedding and search run in worker
threads (`gallery.service.workers`), concurrent identifications are batched, and writers queue for
the gallery's writer lock. Bad input answers 4xx with the reason, never 500: 401 for a missing or wrong key, 404
for an identity that is not enrolled, 408 for a body that stalls, 413 for a body (or image, in pixels) too large,
422 for anything else wrong with the request. `serve(..., workers=N)` runs N processes on one gallery.
"""

import hmac
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Security, UploadFile
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline

from faceid.data.images import DEFAULT_MAX_PIXELS
from faceid.gallery.gallery import Gallery
from faceid.gallery.names import validate_identity_name
from faceid.gallery.photos import identify_photo
from faceid.gallery.records import GalleryError, NotEnrolled
from faceid.gallery.samples.enrolment_check import EnrolmentCheck
from faceid.gallery.samples.kept_images import keep_bytes, keeps_images
from faceid.gallery.service.limits import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_READ_TIMEOUT_S, BodyLimits
from faceid.gallery.service.schemas import (
    Enrolment,
    Health,
    IdentifyAnswer,
    IdentityDetail,
    IdentityList,
    Removal,
    Stats,
    Verification,
)
from faceid.gallery.service.views import identity_detail
from faceid.gallery.service.workers import GalleryWorkers, IdentifyBatcher
from faceid.gallery.threshold_policy import DEFAULT_POLICY, check_policy, check_threshold, threshold_in_force

SETTINGS_VARIABLE = "FACEID_SERVE_SETTINGS"
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="APIKeyHeader",
                              description="The service's API key, when it was started with one (--api-key).")
NOT_ENROLLED = {404: {"description": "The identity is not enrolled"}}
SELECT = Annotated[Literal["subject", "largest", "best", "center"] | None, Query(
    description="which face of a photo to use (default subject: large and central; see faceid.face_selection)")]


def create_app(gallery: Gallery, api_key: str | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
               *, max_pixels: int = DEFAULT_MAX_PIXELS, threshold_override: str = DEFAULT_POLICY,
               threads: int = 4, batch_size: int = 32, batch_wait_ms: float = 5.0,
               read_timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> FastAPI:
    """The app serving `gallery` (its path, embedder and preprocessor: each worker thread opens its own)."""
    check_policy(threshold_override)
    workers = GalleryWorkers(gallery, threads, max_pixels, threshold_override)
    batcher = IdentifyBatcher(workers, batch_size, batch_wait_ms)
    app = FastAPIOffline(title="faceid gallery", version="1", on_shutdown=[workers.close],
                         description="Enroll identities, verify (1:1) and identify (1:N).",
                         swagger_ui_parameters={"validatorUrl": None})  # no badge fetched from swagger.io
    app.state.workers, app.state.batcher = workers, batcher

    def key_ok(key: str | None) -> bool:
        return api_key is None or hmac.compare_digest((key or "").encode(), api_key.encode())

    def authorised(key: Annotated[str | None, Security(API_KEY_HEADER)]) -> None:
        if not key_ok(key):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    async def prepared(upload: UploadFile, number: int = 0, keep: bool = False, select: str | None = None,
                       check: EnrolmentCheck | None = None):
        data, name = await upload.read(), upload.filename or f"upload {number}"

        def prepare(g: Gallery):
            crop = g.resolver.selecting(select).prepare(data, name, check)
            if keep and keeps_images(g):  # an enrolled upload is kept, so that it can be re-embedded
                return replace(crop, source=keep_bytes(g, data, crop.file_hash, Path(name).suffix))
            return crop

        return await workers.read(prepare)

    @app.exception_handler(GalleryError)
    async def gallery_error(_, error: GalleryError):
        return JSONResponse({"detail": str(error)}, status_code=404 if isinstance(error, NotEnrolled) else 422)

    guarded = [Depends(authorised)]

    @app.get("/health", response_model=Health, response_model_exclude_unset=True, summary="Is the service up")
    async def health(key: Annotated[str | None, Security(API_KEY_HEADER)]) -> dict:
        """Always `{"status": "ok"}` while the service answers. With the API key (when one is set) also the number
        of identities and templates, and which threshold is in force and where it came from."""
        if api_key is None or not key_ok(key):
            return {"status": "ok"}
        return {"status": "ok", **await workers.read(_health)}

    @app.get("/stats", dependencies=guarded, response_model=Stats, summary="The gallery's statistics")
    async def stats() -> dict:
        """Counts, sizes on disk, the index and its snapshot state, the embedder's fingerprint, and the threshold in
        force with its source (as `faceid gallery stats` shows them)."""
        return await workers.read(lambda g: g.stats())

    @app.get("/identities", dependencies=guarded, response_model=IdentityList,
             summary="List the enrolled identities")
    async def identities() -> list[dict]:
        """Every identity by name, with its number of templates, metadata and creation time."""
        return await workers.read(lambda g: g.list())

    @app.get("/identities/{name}", dependencies=guarded, response_model=IdentityDetail, responses=NOT_ENROLLED,
             summary="One identity and its templates")
    async def identity(name: str) -> dict:
        """The identity's summary and each of its templates (id, source file name, file hash, face quality,
        creation time); when the gallery keeps the enrolled images, a thumbnail of each as a JPEG data URI."""
        return await workers.read(identity_detail, name)

    @app.post("/identities/{name}", dependencies=guarded, response_model=Enrolment, summary="Enroll face images")
    async def enroll(name: str, files: Annotated[list[UploadFile], File(description="face images")],
                     select: SELECT = None, allow_low_quality: Annotated[bool, Query(
                         description="enroll faces that fail the quality gate (small, blurred, turned away)")] = False
                     ) -> dict:
        """Adds one template per uploaded image to `name`, creating the identity if new. An image whose content the
        identity already has (or that repeats an earlier upload of the request) is skipped and listed by its
        upload's file name under `duplicates`. A photo whose subject is ambiguous (unless `select` names the face) or
        whose face fails the quality gate (unless `allow_low_quality`) is refused with 422 and the reason."""
        name = validate_identity_name(name)
        check = EnrolmentCheck.from_options(select, allow_low_quality)
        crops = [await prepared(upload, number, True, select, check) for number, upload in enumerate(files)]
        samples = await workers.read(lambda g: g.resolver.embed_prepared(crops))
        return await workers.write(lambda g: g.enroll(name, samples, labels=[crop.name for crop in crops]))

    @app.delete("/identities/{name}", dependencies=guarded, response_model=Removal, responses=NOT_ENROLLED,
                summary="Remove an identity")
    async def remove(name: str) -> dict:
        """Removes the identity and all its templates."""
        return {"removed": name, "templates": await workers.write(lambda g: g.remove(name))}

    @app.post("/verify", dependencies=guarded, response_model=Verification, responses=NOT_ENROLLED,
              summary="Verify a face against one identity (1:1)")
    async def verify(identity: Annotated[str, Form()], file: Annotated[UploadFile, File()],
                     threshold: Annotated[float | None, Form()] = None, select: SELECT = None) -> dict:
        """The probe's best score against the identity and, with a threshold (the request's, within the service's
        threshold policy, or the gallery's), whether it is accepted; `probe` is the face used, with its quality."""
        threshold = None if threshold is None else check_threshold(threshold)
        crop = await prepared(file, select=select)
        decision = await workers.read(lambda g: g.verify(g.resolver.embed_prepared([crop])[0], identity, threshold))
        return decision.to_dict()

    @app.post("/identify", dependencies=guarded, response_model=IdentifyAnswer,
              summary="Identify a face among the enrolled identities (1:N)")
    async def identify(file: Annotated[UploadFile, File()], k: Annotated[int, Form(ge=1, le=100)] = 5,
                       threshold: Annotated[float | None, Form()] = None, all_faces: bool = False,
                       closed_set: Annotated[bool, Form()] = False, select: SELECT = None) -> dict | list:
        """The top-k candidates and the best one, or `unknown` below the threshold (the request's, within the
        service's threshold policy, or the gallery's; a gallery without one needs `threshold` or `closed_set`).
        `probe` is the face used (`select`), with its quality, so that a client can tell "unknown" from a bad photo.
        With `all_faces=true`, one such answer per face of the photo, left to right, with its box and landmarks."""
        threshold = None if threshold is None else check_threshold(threshold)
        if all_faces:
            data, name = await file.read(), file.filename or "upload"
            matches = await workers.read(lambda g: identify_photo(g, data, k, threshold, name, closed_set))
            return [match.to_dict() for match in matches]
        result = await batcher.identify(await prepared(file, select=select), k, threshold, closed_set)
        return result.to_dict()

    app.add_middleware(BodyLimits, max_bytes=max_request_bytes, read_timeout_s=read_timeout_s)
    return app


def _health(gallery: Gallery) -> dict:
    """What /health adds for a caller with the key: the counts and the threshold in force."""
    with gallery.reading() as store:
        identities, templates = store.counts()
        return {"identities": identities, "templates": templates, **threshold_in_force(gallery.setting("threshold"))}


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
