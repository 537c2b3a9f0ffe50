"""ASGI middleware that bounds what one request may cost before any handler runs.

`BodyLimits` answers 413 for a body above `max_bytes` (by its Content-Length, or as a chunked body
streams in) and 408 when the client stops sending its body for `read_timeout_s` seconds. Either way
the handler then sees the client as gone, and whatever it would still answer is dropped.
"""

import asyncio
import json

DEFAULT_MAX_REQUEST_BYTES = 20 * 1024 * 1024
DEFAULT_READ_TIMEOUT_S = 10.0


class BodyLimits:
    def __init__(self, app, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 read_timeout_s: float = DEFAULT_READ_TIMEOUT_S):
        self.app, self.max_bytes, self.read_timeout_s = app, max_bytes, read_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _answer(send, 413, f"request body larger than {self.max_bytes} bytes")
        state = {"received": 0, "body_done": False, "refused": False, "started": False}

        async def limited_receive():
            if state["refused"]:
                return {"type": "http.disconnect"}
            if state["body_done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout_s)
            except TimeoutError:
                return await refuse(408, f"no request body received for {self.read_timeout_s:g} s; send the whole "
                                         "body without pausing")
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                state["body_done"] = not message.get("more_body", False)
                if state["received"] > self.max_bytes:
                    return await refuse(413, f"request body larger than {self.max_bytes} bytes")
            return message

        async def refuse(status: int, detail: str) -> dict:
            state["refused"] = True
            if not state["started"]:
                state["started"] = True
                await _answer(send, status, detail)
            return {"type": "http.disconnect"}

        async def guarded_send(message):
            if state["refused"]:
                return
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise


async def _answer(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
