"""The HTTP/WebSocket surface: a FastAPI router over a `SessionManager`, and an app factory.

`create_app` serves sessions that live in this process; the cluster's ingress serves
`create_directory_app` over sessions that live elsewhere. Either way `stream/` never learns how
sections are made or where sessions run.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from aiortc import RTCSessionDescription
from fastapi import APIRouter, FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, ValidationError

from framepack_live.engine.errors import InputError

from . import memory
from .backend import SectionBackend
from .handle import SessionDirectory, SessionHandle
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


def create_router(directory: SessionDirectory) -> APIRouter:
    """`/ws`, `/healthz`, `POST /webrtc/offer` and `GET /sessions/{id}/video.mp4` over `directory`.

    Whoever includes the router owns the directory's lifetime: call `await directory.close()` on shutdown.
    """
    router = APIRouter()
    settings = directory.settings

    @router.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        client = websocket.client.host if websocket.client else "unknown"
        await Connection(websocket, directory, client).serve()

    @router.get("/healthz")
    async def healthz() -> dict:
        """Liveness, running sessions, and what the answering process holds of their video."""
        return {
            "status": "ok",
            "sessions": await directory.active_count(),
            "instance": settings.instance,
            "held_frame_bytes": memory.held_frame_bytes(),
            "rss_bytes": memory.rss_bytes(),
        }

    @router.post("/webrtc/offer")
    async def webrtc_offer(request: Request) -> Response:
        try:
            body = await _read_limited(request, settings.limits.max_message_bytes)
            try:
                offer = Offer.model_validate_json(body)
            except ValidationError as exc:
                raise InputError("bad_request", str(exc.errors(include_url=False)[0]["msg"])) from None
            session = await directory.get(offer.session_id, offer.token)
            answer = await answer_offer(session, RTCSessionDescription(offer.sdp, offer.type), settings.ice_servers)
        except InputError as exc:
            return error_response(exc)
        return JSONResponse({"sdp": answer.sdp, "type": answer.type})

    @router.get("/sessions/{session_id}/video.mp4")
    async def video(session_id: str, token: str = "") -> Response:
        try:
            session = await directory.get(session_id, token)
            parts = await session.export_parts()
            if not parts:
                raise InputError("not_found", "the session has no frames yet")
        except InputError as exc:
            return error_response(exc)
        return StreamingResponse(
            _export(session, parts), media_type="video/mp4", headers={"Cache-Control": "no-store"}
        )

    return router


async def _export(session: SessionHandle, parts: int):
    """The MP4 of the frames made when the download began, a part (a section) at a time: the
    server holds one part of it, however long the video."""
    for index in range(parts):
        yield await session.export_part(index)


def create_app(backend: SectionBackend, settings: StreamSettings | None = None, static_dir: str | Path | None = None) -> FastAPI:
    """A complete server with this process's sessions over `backend`: the router, session shutdown
    with the app, and the browser client at `/` when `static_dir` is given."""
    return create_directory_app(SessionManager(backend, settings or StreamSettings()), static_dir)


def create_directory_app(directory: SessionDirectory, static_dir: str | Path | None = None) -> FastAPI:
    """The same over any session directory (the cluster's sessions live in other processes)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await directory.close()

    app = FastAPI(title="framepack-live", lifespan=lifespan)
    app.state.directory = directory
    app.include_router(create_router(directory))
    if static_dir is not None:
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="client")
    return app
