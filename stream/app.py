"""The HTTP/WebSocket surface: a FastAPI router over a `SessionManager`, and an app factory.

The cluster's ingress either serves `create_app(...)` as it is or includes `create_router(...)`
in its own app; either way `stream/` never learns how sections are made.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from aiortc import RTCSessionDescription
from fastapi import APIRouter, FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, ValidationError

from framepack_live.engine.errors import InputError

from .backend import SectionBackend
from .manager import SessionManager
from .settings import StreamSettings
from .webrtc import answer_offer
from .ws import Connection

#: HTTP status for each error code of DESIGN.md.
HTTP_STATUS = {
    "bad_request": 400,
    "bad_image": 400,
    "prompt_too_long": 400,
    "unauthorized": 401,
    "not_found": 404,
    "busy": 429,
    "internal": 500,
}


class Offer(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    session_id: str
    token: str
    sdp: str
    type: Literal["offer"]


def error_response(exc: InputError) -> JSONResponse:
    """The WebSocket `error` message's body, with the matching HTTP status."""
    return JSONResponse(
        {"type": "error", "code": exc.code, "message": exc.message}, status_code=HTTP_STATUS.get(exc.code, 400)
    )


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes before reading them all into memory.

    Starlette has no body-size limit of its own.
    """
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InputError("bad_request", f"request body over {limit} bytes")
    return bytes(body)


def create_router(manager: SessionManager) -> APIRouter:
    """`/ws`, `/healthz`, `POST /webrtc/offer` and `GET /sessions/{id}/video.mp4` over `manager`.

    Whoever includes the router owns the manager's lifetime: call `await manager.close()` on shutdown.
    """
    router = APIRouter()
    settings = manager.settings

    @router.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        await Connection(websocket, manager).serve()

    @router.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "sessions": manager.active_count()}

    @router.post("/webrtc/offer")
    async def webrtc_offer(request: Request) -> Response:
        try:
            body = await _read_limited(request, settings.limits.max_message_bytes)
            try:
                offer = Offer.model_validate_json(body)
            except ValidationError as exc:
                raise InputError("bad_request", str(exc.errors(include_url=False)[0]["msg"])) from None
            session = manager.get(offer.session_id, offer.token)
            answer = await answer_offer(session, RTCSessionDescription(offer.sdp, offer.type), settings.ice_servers)
        except InputError as exc:
            return error_response(exc)
        return JSONResponse({"sdp": answer.sdp, "type": answer.type})

    @router.get("/sessions/{session_id}/video.mp4")
    async def video(session_id: str, token: str = "") -> Response:
        try:
            data = await manager.get(session_id, token).export_mp4()
        except InputError as exc:
            return error_response(exc)
        return Response(data, media_type="video/mp4", headers={"Cache-Control": "no-store"})

    return router


def create_app(backend: SectionBackend, settings: StreamSettings | None = None, static_dir: str | Path | None = None) -> FastAPI:
    """A complete server: the router, session shutdown with the app, and the browser client at `/`
    when `static_dir` is given (the cluster passes the `client/` folder)."""
    manager = SessionManager(backend, settings or StreamSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await manager.close()

    app = FastAPI(title="framepack-live", lifespan=lifespan)
    app.state.manager = manager
    app.include_router(create_router(manager))
    if static_dir is not None:
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="client")
    return app
