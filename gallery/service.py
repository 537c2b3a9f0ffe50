"""`faceid serve GALLERY`: the gallery over HTTP (FastAPI + uvicorn).

Endpoints: GET /health, GET /identities, POST /identities/{name} (enroll images), DELETE
/identities/{name}, POST /verify, POST /identify; the OpenAPI spec is at /openapi.json and the
interactive docs at /docs. Uploads are size-limited (413 beyond `max_request_bytes`) and validated:
bad input answers 4xx with the reason, never 500. With an API key set, every endpoint but
/health needs the header `X-API-Key`.
"""

import hmac
import threading
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

from faceid.data.images import ImageReadError, decode_rgb
from gallery.gallery import Gallery, GalleryError

DEFAULT_MAX_REQUEST_BYTES = 20 * 1024 * 1024


class RequestSizeLimit:
    """ASGI middleware: refuse bodies above `limit` bytes, by header or as they stream in."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and int(declared) > self.limit:
            return await self._too_large(send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send):
        body = f'{{"detail": "request body larger than {self.limit} bytes"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(gallery: Gallery, api_key: str | None = None,
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> FastAPI:
    app = FastAPI(title="faceid gallery", version="1",
                  description="Enroll identities, verify (1:1) and identify (1:N).")
    lock = threading.Lock()  # one request at a time touches the gallery object (SQLite connection, index)

    def authorised(request: Request) -> None:
        if api_key is not None and not hmac.compare_digest(request.headers.get("x-api-key", ""), api_key):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    async def images(files: list[UploadFile]) -> list:
        decoded = []
        for upload in files:
            try:
                decoded.append(decode_rgb(await upload.read(), upload.filename or "upload"))
            except ImageReadError as error:
                raise HTTPException(422, f"{upload.filename}: {error.reason}") from None
        return decoded

    @app.exception_handler(GalleryError)
    async def gallery_error(_, error: GalleryError):
        status = 404 if "is not enrolled" in str(error) else 422
        return JSONResponse({"detail": str(error)}, status_code=status)

    guarded = [Depends(authorised)]

    @app.get("/health")
    def health() -> dict:
        with lock:
            stats = gallery.stats()
        return {"status": "ok", "identities": stats["identities"], "templates": stats["templates"]}

    @app.get("/identities", dependencies=guarded)
    def identities() -> list[dict]:
        with lock:
            return gallery.list()

    @app.post("/identities/{name}", dependencies=guarded)
    async def enroll(name: str, files: Annotated[list[UploadFile], File(description="face images")]) -> dict:
        crops = await images(files)
        with lock:
            samples = gallery.resolve(crops, [f.filename or f"upload {i}" for i, f in enumerate(files)])
            return gallery.enroll(name, samples)

    @app.delete("/identities/{name}", dependencies=guarded)
    def remove(name: str) -> dict:
        with lock:
            return {"removed": name, "templates": gallery.remove(name)}

    @app.post("/verify", dependencies=guarded)
    async def verify(identity: Annotated[str, Form()], file: Annotated[UploadFile, File()],
                     threshold: Annotated[float | None, Form()] = None) -> dict:
        crop = (await images([file]))[0]
        with lock:
            decision = gallery.verify(gallery.resolve([crop], [file.filename or "upload"])[0], identity, threshold)
        return decision.__dict__

    @app.post("/identify", dependencies=guarded)
    async def identify(file: Annotated[UploadFile, File()], k: Annotated[int, Form(ge=1, le=100)] = 5,
                       threshold: Annotated[float | None, Form()] = None) -> dict:
        crop = (await images([file]))[0]
        with lock:
            result = gallery.identify(gallery.resolve([crop], [file.filename or "upload"])[0], k, threshold)
        return {"identity": result.identity, "candidates": [{"identity": n, "score": s} for n, s in result.candidates],
                "threshold": result.threshold, "threshold_source": result.threshold_source}

    app.add_middleware(RequestSizeLimit, limit=max_request_bytes)
    return app


def serve(gallery: Gallery, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
    import uvicorn

    uvicorn.run(create_app(gallery, api_key, max_request_bytes), host=host, port=port)
