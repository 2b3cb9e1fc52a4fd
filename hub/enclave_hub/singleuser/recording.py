"""Recording a notebook session: loaded into each session's Jupyter server by the spawner.

The code of every cell is taken from the kernel channel as the server passes it on, not from
inside the kernel (which user code controls), and is sent to the audit service before the
kernel sees it: a cell that cannot be recorded is replaced by one that raises an error saying
so. The debugger, which evaluates code outside cells, is refused on that channel. The Contents
API's file changes and the kernels' lifecycle events that jupyter_server emits are recorded
too; reads and code saves are recorded by the contents manager (`contents`), terminal input by
`terminals`. Events are sent with the server's own hub token; the audit service attributes them
to the session that token belongs to.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
from typing import Any

from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from ..core.audit_client import AuditClient, AuditRefused
from .contents import is_code

PR_SET_DUMPABLE = 4
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CONTENTS_EVENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"
KERNEL_EVENTS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
RECORDER_SETTING = "enclave_recorder"
# The Contents API's changes, as jupyter_server reports them. Reads of a file's content and
# saves of code files are recorded by the contents manager itself, with what they hold.
FILE_CHANGES = ("create", "save", "upload", "rename", "copy", "delete")
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15)  # rides out a restart of the hub or the audit service
REFUSED_CELL = (
    "raise RuntimeError('Enclave did not run this cell: it could not be recorded in the audit "
    "log ({reason}). Try again in a moment; tell your administrator if this persists.')"
)


class SessionRecorder:
    """Sends this session's events to the audit service, retrying while it is unavailable."""

    def __init__(self, client: AuditClient, log):
        self.client = client
        self.log = log

    async def record(self, **event: Any) -> str | None:
        """Record an event; the reason it could not be recorded, or None once it is."""
        delays = iter(RETRY_DELAYS)
        while True:
            try:
                await self.client.record(**event)
                return None
            except AuditRefused as error:
                delay = next(delays, None)
                if delay is None or not error.retryable:
                    self.log.error("Audit event %s not recorded: %s", event.get("action"), error)
                    return str(error)
                await asyncio.sleep(delay)

    async def on_contents_event(self, logger, schema_id: str, data: dict) -> None:
        action = data.get("action")
        if action not in FILE_CHANGES or (action == "save" and is_code(data.get("path", ""))):
            return
        await self.record(
            action=f"file.{action}",
            target=data.get("path", ""),
            outcome="ok",
            note=f"from {data['source_path']}" if data.get("source_path") else None,
        )

    async def on_kernel_event(self, logger, schema_id: str, data: dict) -> None:
        await self.record(
            action=f"kernel.{data.get('action')}",
            target=data.get("kernel_id") or "(new kernel)",
            outcome="ok" if data.get("status") == "success" else "failed",
            note=data.get("kernel_name"),
        )


def _decode(message: str | bytes, subprotocol: str | None) -> tuple[str, dict, dict, Any]:
    """(channel, header, content, parsed form) of a message from the browser."""
    if subprotocol == V1_PROTOCOL:
        channel, parts = deserialize_msg_from_ws_v1(message)
        return channel, json.loads(parts[0]), json.loads(parts[3]), parts
    parsed = (
        deserialize_binary_message(message) if isinstance(message, bytes) else json.loads(message)
    )
    return parsed.get("channel") or "shell", parsed["header"], parsed["content"], parsed


def _kind(message: str | bytes, subprotocol: str | None) -> tuple[str, str, dict]:
    """(channel, message type, content) of a message from the browser; ("", "", {}) when it
    cannot be parsed (the server refuses it, so nothing runs)."""
    try:
        channel, header, content, _ = _decode(message, subprotocol)
    except (ValueError, KeyError, IndexError, TypeError):
        return "", "", {}
    return channel, header.get("msg_type", ""), content


def executed_code(message: str | bytes, subprotocol: str | None) -> str | None:
    """The code of an execute request on the shell channel; None for any other message."""
    channel, msg_type, content = _kind(message, subprotocol)
    if channel != "shell" or msg_type != "execute_request":
        return None
    code = content.get("code", "")
    return code if isinstance(code, str) else json.dumps(code)


def is_debug_request(message: str | bytes, subprotocol: str | None) -> bool:
    """A request to the kernel's debugger, which evaluates code outside any cell."""
    return _kind(message, subprotocol)[1] == "debug_request"


def with_code(message: str | bytes, subprotocol: str | None, code: str) -> str | bytes:
    """The same execute request with other code."""
    channel, _, content, parsed = _decode(message, subprotocol)
    content = {**content, "code": code}
    if subprotocol == V1_PROTOCOL:
        parts = [*parsed[:3], json.dumps(content).encode(), *parsed[4:]]
        return serialize_msg_to_ws_v1(parts, channel)
    parsed = {**parsed, "content": content}
    if isinstance(message, bytes):
        return serialize_binary_message(parsed)
    return json.dumps(parsed)


class RecordingChannels(ZMQChannelsWebsocketConnection):
    """The kernel websocket, recording each cell before the kernel receives it, in order."""

    _backlog: asyncio.Future | None = None

    def handle_incoming_message(self, incoming_msg: str) -> None:
        code = executed_code(incoming_msg, self.subprotocol)
        debug = is_debug_request(incoming_msg, self.subprotocol)
        if code is None and not debug and self._backlog is None:
            super().handle_incoming_message(incoming_msg)
            return
        # Messages wait behind a cell being recorded, so none overtakes it.
        self._backlog = asyncio.ensure_future(
            self._pass_on(self._backlog, incoming_msg, code, debug)
        )

    async def _pass_on(
        self, before: asyncio.Future | None, message, code: str | None, debug: bool
    ) -> None:
        if before is not None:
            await asyncio.shield(before)
        recorder: SessionRecorder = self.websocket_handler.settings[RECORDER_SETTING]
        if debug:
            await recorder.record(
                action="kernel.debug",
                target=self.kernel_id,
                outcome="refused",
                reason="the debugger is off in Enclave's sessions",
            )
        else:
            if code is not None:
                reason = await recorder.record(
                    action="cell.execute", target=self.kernel_id, outcome="ok", code=code
                )
                if reason is not None:
                    refused = REFUSED_CELL.format(reason=reason)
                    message = with_code(message, self.subprotocol, refused)
            super().handle_incoming_message(message)
        if self._backlog is asyncio.current_task():
            self._backlog = None


def refuse_inspection() -> None:
    """Make this server non-dumpable: processes of its own uid (the kernels, the terminals) may
    then neither ptrace it nor read or write its memory through /proc. The kernels it starts
    are dumpable again from their exec, as their code is the user's own."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _load_jupyter_server_extension(serverapp) -> None:
    refuse_inspection()
    client = AuditClient(
        os.environ["ENCLAVE_AUDIT_URL"] + os.environ["ENCLAVE_AUDIT_EVENTS_PATH"],
        os.environ["JUPYTERHUB_API_TOKEN"],
    )
    recorder = SessionRecorder(client, serverapp.log)
    serverapp.web_app.settings[RECORDER_SETTING] = recorder
    serverapp.contents_manager.recorder = recorder
    serverapp.event_logger.add_listener(
        schema_id=CONTENTS_EVENTS, listener=recorder.on_contents_event
    )
    serverapp.event_logger.add_listener(schema_id=KERNEL_EVENTS, listener=recorder.on_kernel_event)
    serverapp.log.info("Enclave: cells, file and kernel events are recorded in the audit log")


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]
