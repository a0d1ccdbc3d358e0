"""The WebSocket protocol of DESIGN.md as code: parsing client messages, building server ones.

Client messages are validated with pydantic (already FastAPI's dependency), so a wrong type, a
missing field or an unknown `type` all become one `bad_request` with a readable reason.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from framepack_live.engine.errors import InputError

from .settings import Limits


class _Message(BaseModel):
    # strict: "3" is not a number and true is not 1; unknown fields are ignored so that newer
    # clients can talk to older servers.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


#: LoRAs one `start` may combine, and the bounds of a LoRA's scale: past 2 a LoRA overwhelms the
#: base model, and a negative scale inverts what it learned, which nobody asks for by accident.
MAX_LORAS = 4
MAX_LORA_SCALE = 2.0


class LoraChoice(_Message):
    """One of the server's LoRAs (`GET /config` lists them) by name, and its scale."""

    name: str
    scale: float = Field(default=1.0, ge=0.0, le=MAX_LORA_SCALE, allow_inf_nan=False)


class Start(_Message):
    type: Literal["start"]
    prompt: str
    image: str | None = None
    #: "text": a start made from the prompt alone (`engine.text_start`), with no image.
    start: Literal["image", "text"] = "image"
    seed: int | None = None
    sections: int | None = Field(default=None, ge=0)
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    transition: int | None = Field(default=None, ge=0)
    media: Literal["jpeg", "none"] = "jpeg"
    loras: list[LoraChoice] = Field(default_factory=list, max_length=MAX_LORAS)
    #: DESIGN.md's short form: one LoRA by name, at scale 1 (`loras` takes several, with scales).
    lora: str | None = None
    #: One of the operator's keys, where the server requires them (`GET /config`).
    api_key: str | None = Field(default=None, repr=False)

    @property
    def chosen_loras(self) -> list[LoraChoice]:
        return [*self.loras, *([LoraChoice(name=self.lora)] if self.lora is not None else [])]


class Steer(_Message):
    type: Literal["steer"]
    prompt: str
    transition: int | None = Field(default=None, ge=0)


class Rewind(_Message):
    """Go back to the boundary before `section` (0 .. the sections made) of `branch`'s path
    (default: the current branch) and go on from there with `prompt`, as a new branch."""

    type: Literal["rewind"]
    section: int = Field(ge=0)
    prompt: str
    transition: int | None = Field(default=None, ge=0)
    branch: int | None = Field(default=None, ge=0)


class Pause(_Message):
    type: Literal["pause"]


class Resume(_Message):
    type: Literal["resume"]


class Stop(_Message):
    type: Literal["stop"]


class ResumeSession(_Message):
    type: Literal["resume_session"]
    session_id: str
    token: str


ClientMessage = Annotated[Start | Steer | Rewind | Pause | Resume | Stop | ResumeSession, Field(discriminator="type")]
_client_message = TypeAdapter(ClientMessage)


def parse_client_message(text: str | bytes, limits: Limits) -> ClientMessage:
    """Validate one client message; `InputError` with DESIGN.md's code for anything wrong."""
    if len(text) > limits.max_message_bytes:
        raise InputError("bad_request", f"message of {len(text)} bytes; at most {limits.max_message_bytes} accepted")
    if isinstance(text, bytes):
        raise InputError("bad_request", "control messages are JSON text; binary messages are not accepted")
    try:
        message = _client_message.validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError("bad_request", f"{where}: {first['msg']}" if where else first["msg"]) from None
    if isinstance(message, Start) and message.start == "text" and message.image is not None:
        raise InputError("bad_request", "a start from the prompt alone takes no image; drop `image` or `start`")
    prompt = getattr(message, "prompt", None)
    if prompt is not None and len(prompt) > limits.max_prompt_chars:
        raise InputError("prompt_too_long", f"prompt of {len(prompt)} characters; at most {limits.max_prompt_chars}")
    return message


def image_bytes(image: str) -> bytes:
    """The bytes of a `data:image/...;base64,` URL or of plain base64; the format is sniffed later."""
    if image.startswith("data:"):
        header, sep, image = image.partition(",")
        if not sep or not header.endswith(";base64"):
            raise InputError("bad_image", "the image must be a base64 data URL")
    try:
        return base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("bad_image", "the image is not valid base64") from None


def _json(type_: str, **fields) -> str:
    return json.dumps({"type": type_, **fields}, separators=(",", ":"))


def session_message(session_id: str, token: str, instance: str | None = None) -> str:
    """`instance` (optional) names the server process that answered, for operators and tests."""
    extra = {"instance": instance} if instance is not None else {}
    return _json("session", session_id=session_id, token=token, **extra)


def progress_message(section: int, step: int, steps: int) -> str:
    return _json("progress", section=section, step=step, steps=steps)


def preview_message(section: int, step: int, steps: int, width: int, height: int) -> str:
    """A step preview of the section being made; its JPEG follows as one binary message."""
    return _json("preview", section=section, step=step, steps=steps, width=width, height=height)


def section_message(
    section: int, prompt: str, frames: int, fps: int, width: int, height: int, first_frame: int, branch: int = 0
) -> str:
    return _json(
        "section", section=section, prompt=prompt, frames=frames, fps=fps, width=width, height=height,
        first_frame=first_frame, branch=branch,
    )


def branch_message(branch: int, parent: int, section: int, prompt: str) -> str:
    """A rewind made `branch` from `parent`'s boundary before `section`; the sections that follow are its."""
    return _json("branch", branch=branch, parent=parent, section=section, prompt=prompt)


def error_message(code: str, message: str) -> str:
    return _json("error", code=code, message=message)


def done_message(sections: int, frames: int) -> str:
    return _json("done", sections=sections, frames=frames)
