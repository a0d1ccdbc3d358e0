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
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

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


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class Offer(_Body):
    session_id: str
    token: str
    sdp: str
    type: Literal["offer"]


class DownloadRequest(_Body):
    token: str


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


async def _read_body(request: Request, model: type[_Body], limit: int) -> _Body:
    """A JSON body of `model`'s fields; `bad_request` with the first reason when it is not one."""
    body = await _read_limited(request, limit)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InputError("bad_request", str(exc.errors(include_url=False)[0]["msg"])) from None


def page_config(settings: StreamSettings) -> dict:
    """`GET /config`: what the page needs to offer sensible choices before it starts anything."""
    defaults, limits = settings.generation, settings.limits
    model = settings.model
    return {
        "model": None if model is None else {
            "name": model.name,
            "width": model.trained.width,
            "height": model.trained.height,
            "steps": model.trained.steps,
            "window": model.trained.window,
            "fps": model.trained.fps,
        },
        "defaults": {
            "width": defaults.width,
            "height": defaults.height,
            "steps": defaults.steps,
            "window": defaults.window,
            "fps": defaults.fps,
            "guidance": defaults.guidance,
            "seed": defaults.seed,
            "frames_per_section": defaults.frames_per_section,
            "transition": defaults.transition,
        },
        "loras": [] if model is None else [{"name": lora.name, "description": lora.description} for lora in model.loras],
        "limits": {
            "max_steps": limits.max_steps,
            "max_pixels": limits.max_video_pixels,
            "max_video_seconds": limits.max_video_seconds,
            # Sections of the default size that fit in the longest video a session may make.
            "max_sections": int(limits.max_video_seconds * defaults.fps) // defaults.frames_per_section,
            "max_prompt_chars": limits.max_prompt_chars,
            "max_image_pixels": limits.max_image_pixels,
            "max_message_bytes": limits.max_message_bytes,
        },
        "ice_servers": list(settings.ice_servers),
        "api_key_required": settings.access.api_key_required,
    }


def create_router(directory: SessionDirectory) -> APIRouter:
    """`/ws`, `/healthz`, `/config`, `POST /webrtc/offer`, `POST /sessions/{id}/download` and
    `GET /sessions/{id}/video.mp4` over `directory`.

    Whoever includes the router owns the directory's lifetime: call `await directory.close()` on
    shutdown. With `trusted_proxies` set, the app must also apply `ProxyHeadersMiddleware` as
    `create_directory_app` does (the client addresses come from it).
    """
    router = APIRouter()
    settings = directory.settings
    access = settings.access

    @router.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        try:
            access.check_origin(websocket.headers)
        except InputError:
            # Refused before the handshake completes: the browser sees HTTP 403 and no socket.
            await websocket.close(code=1008)
            return
        client = websocket.client.host if websocket.client else "unknown"
        await Connection(websocket, directory, client).serve()

    @router.get("/config")
    async def config() -> dict:
        return page_config(settings)

    @router.get("/healthz")
    async def healthz() -> dict:
        """Liveness, running sessions, the model (downloading, loading or ready: a first start
        fetches it) and what the answering process holds of the sessions' video."""
        return {
            "status": "ok",
            "sessions": await directory.active_count(),
            "model": await directory.model_status(),
            "instance": settings.instance,
            "held_frame_bytes": memory.held_frame_bytes(),
            "rss_bytes": memory.rss_bytes(),
        }

    @router.post("/webrtc/offer")
    async def webrtc_offer(request: Request) -> Response:
        try:
            access.check_origin(request.headers)
            offer = await _read_body(request, Offer, settings.limits.max_message_bytes)
            session = await directory.get(offer.session_id, offer.token)
            answer = await answer_offer(session, RTCSessionDescription(offer.sdp, offer.type), settings.ice_servers)
        except InputError as exc:
            return error_response(exc)
        return JSONResponse({"sdp": answer.sdp, "type": answer.type})

    @router.post("/sessions/{session_id}/download")
    async def download_link(session_id: str, request: Request) -> Response:
        """A link to the session's MP4 that works for `link_lifetime_s`, for the session's token."""
        try:
            access.check_origin(request.headers)
            body = await _read_body(request, DownloadRequest, settings.limits.max_message_bytes)
            session = await directory.get(session_id, body.token)
            if not await session.export_parts():
                raise InputError("not_found", "the session has no frames yet")
        except InputError as exc:
            return error_response(exc)
        url, expires = access.download_link(session_id)
        return JSONResponse({"url": url, "expires": expires}, headers={"Cache-Control": "no-store"})

    @router.get("/sessions/{session_id}/video.mp4")
    async def video(session_id: str, expires: str = "", signature: str = "", branch: int | None = None) -> Response:
        """The MP4 of a branch's path (`?branch=N`; default: the branch being made)."""
        try:
            access.check_download_link(session_id, expires, signature)
            session = await directory.find(session_id)
            parts = await session.export_parts(branch)
            if not parts:
                raise InputError("not_found", "the session has no frames yet")
        except InputError as exc:
            return error_response(exc)
        headers = {
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="framepack-live-{session_id}{"" if branch is None else f"-branch{branch}"}.mp4"',
        }
        return StreamingResponse(_export(session, parts, branch), media_type="video/mp4", headers=headers)

    return router


async def _export(session: SessionHandle, parts: int, branch: int | None):
    """The MP4 of the frames made when the download began, a part (a section) at a time: the
    server holds one part of it, however long the video."""
    for index in range(parts):
        yield await session.export_part(index, parts, branch)


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
    proxies = directory.settings.access.trusted_proxies
    if proxies:
        # uvicorn's middleware does what `trusted_proxies` promises: the client is the rightmost
        # `X-Forwarded-For` hop that is not a trusted proxy, and only a trusted peer's header counts.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(proxies))
    if static_dir is not None:
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="client")
    return app
