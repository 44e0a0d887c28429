"""Naming a process in a request: ``<0.123.0>``, ``0.123.0``, ``#PID<0.123.0>`` or a registered name.

Arsenal only checks the shape of the text here; the node itself turns it into a
pid (``list_to_pid``) or looks the name up (``binary_to_existing_atom``). A pid
built in Python with numbers out of the node's ranges would make the node drop
the whole connection, and a name must never become a new atom: both are the
agent's job, and both fail there as errors of one call.
"""

from __future__ import annotations

import re

from ..beam import Node
from ..dist import Atom, Pid
from .errors import ErrorCode, OperationError

__all__ = ["check_target", "is_agent_error", "process_ref", "resolve_process"]

_PID = re.compile(r"^(?:#PID)?<?(\d{1,10})\.(\d{1,10})\.(\d{1,10})>?$")
_NAME = re.compile(r"^:?[A-Za-z][A-Za-z0-9_.@]{0,254}$")


def process_ref(text: str) -> bytes:
    """The reference to send to the agent: ``b"<0.N.S>"`` for a pid, the bare name otherwise."""
    text = text.strip()
    match = _PID.match(text)
    if match is not None:
        index, number, serial = match.groups()
        if index != "0":
            raise OperationError(
                ErrorCode.validation_error,
                f"{text} is a pid of another node (only <0.N.S> pids are local); choose that node with node=",
            )
        return f"<0.{number}.{serial}>".encode()
    if not _NAME.match(text):
        raise OperationError(
            ErrorCode.validation_error, f"{text!r} is neither a pid (<0.123.0>) nor a registered name"
        )
    return text.lstrip(":").encode()


def is_agent_error(raw: object) -> bool:
    """Whether an agent function answered ``{error, Reason}`` (the agents' one way of refusing)."""
    return isinstance(raw, tuple) and len(raw) == 2 and raw[0] == Atom("error")


def check_target(result: object, text: str, node: Node) -> None:
    """Raise the error an agent's ``{error, not_found | bad_pid}`` means."""
    if is_agent_error(result):
        if result[1] == Atom("bad_pid"):
            raise OperationError(ErrorCode.validation_error, f"{text} is not a valid pid on {node.name}")
        if result[1] == Atom("not_found"):
            raise OperationError(ErrorCode.not_found, f"no process is registered as {text} on {node.name}")


async def resolve_process(node: Node, text: str) -> Pid:
    """The pid ``text`` names on ``node`` (one call into the node)."""
    result = await node.agent_call("target", [process_ref(text)])
    check_target(result, text, node)
    return result[1]  # type: ignore[index]
