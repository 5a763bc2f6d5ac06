"""``WS /api/v1/instances/{id}/stream``: a live view of one instance
(protocol: ``docs/stream-protocol.md``).  Thin: parse the query, adapt the WebSocket to
the lab's ``Sink``, pass client messages to the stream hub."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from app.lab.service import Lab, LabError
from app.lab.stream import CLOSE_POLICY, StreamError

from .auth import may_read, noted, origin_allowed, quotas_of, websocket_principal
from .refs import resolve

router = APIRouter(prefix="/api/v1")
MAX_MESSAGE = 64 * 1024
#: close code for a missing, unknown, revoked or expired token (HTTP's 401, in the 4xxx
#: range the protocol leaves to applications)
CLOSE_UNAUTHORIZED = 4401
#: close code for an address that made too many failed authentications (HTTP's 429)
CLOSE_RATE_LIMITED = 4429


class WebSocketSink:
    """The lab's ``Sink`` over a Starlette WebSocket."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send(self, text: str) -> None:
        await self.ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            await self.ws.close(code=code, reason=reason[:120])


@router.websocket("/instances/{instance_id}/stream")
async def stream(websocket: WebSocket, instance_id: str) -> None:
    """Stream an instance (``instance_id``: a reference, ``app.api.refs``): ``hello``
    with a snapshot, then frames at the chosen rate."""
    lab: Lab = websocket.app.state.lab
    if not origin_allowed(websocket):
        await websocket.close(code=CLOSE_POLICY)  # before the handshake: HTTP 403
        return
    try:
        principal = await websocket_principal(websocket)
    except LabError as e:  # too many bad tokens from this address
        await websocket.accept()
        await websocket.close(code=CLOSE_RATE_LIMITED, reason=e.message[:120])
        return
    noted(websocket, principal)
    await websocket.accept()
    if principal is None:
        await websocket.close(
            code=CLOSE_UNAUTHORIZED,
            reason="unauthorized: pass a valid token (?token=, Authorization: Bearer) or sign in",
        )
        return
    try:
        inst = resolve(websocket, principal, instance_id)
    except LabError as e:
        await websocket.close(code=CLOSE_POLICY, reason=e.message[:120])
        return
    if inst is None or not await may_read(lab, principal, inst.id):
        # what the caller typed, word for word as for a missing instance
        await websocket.close(code=CLOSE_POLICY, reason=f"there is no instance {instance_id}"[:120])
        return
    query = websocket.query_params
    quotas = await quotas_of(lab, principal)
    try:
        topics = None
        if "topics" in query:
            topics = [t.strip() for t in query["topics"].split(",") if t.strip()]
        rate = None
        if "rate" in query:
            raw = query["rate"]
            if not raw.isdigit():
                raise StreamError(f"rate must be an integer from 1 to 30, got {raw!r}")
            rate = int(raw)
        viewer = lab.stream.connect(
            inst.id,
            WebSocketSink(websocket),
            topics,
            rate,
            owner=principal.name,
            max_streams=None if quotas is None else quotas.streams,
        )
    except StreamError as e:
        await websocket.close(code=e.code, reason=str(e)[:120])
        return
    await lab.use(inst)  # a parked machine comes back (a watched one is never parked)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                lab.stream.reject(viewer, "send JSON messages as text frames, not binary")
            elif len(text) > MAX_MESSAGE:
                lab.stream.reject(viewer, f"messages are at most {MAX_MESSAGE} characters")
            else:
                await lab.stream.handle(viewer, text)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        lab.stream.disconnect(viewer)
        with contextlib.suppress(Exception):
            await websocket.close()
