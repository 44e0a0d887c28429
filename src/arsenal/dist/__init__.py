"""``arsenal.dist`` — an asyncio client of the Erlang distribution protocol, as a hidden node.

    async with LocalNode(cookie="secret") as local:
        conn = await local.connect("app@host")
        print(await conn.rpc("erlang", "node"))

It knows nothing of Arsenal's operations: it could be published on its own.
"""

from .connection import Connection, ConnectionStats
from .cookie import resolve_cookie
from .epmd import NodeAddress, port_please
from .errors import (
    ConnectFailed,
    CookieRejected,
    DistError,
    DistTimeout,
    EpmdUnreachable,
    HandshakeError,
    NodeDown,
    NodeNotFound,
    NotAllowed,
    ProtocolError,
    RpcError,
)
from .etf import DecodeError, EncodeError, binary_to_term, term_to_binary
from .flags import ARSENAL_FLAGS, DFlag
from .node import LocalNode, split_node_name
from .process import Process
from .terms import (
    Atom,
    BitString,
    Export,
    FrozenList,
    FrozenMap,
    Fun,
    ImproperList,
    Pid,
    Port,
    Ref,
    StrictKey,
    Term,
    charlist,
)

__all__ = [
    "ARSENAL_FLAGS",
    "Atom",
    "BitString",
    "ConnectFailed",
    "Connection",
    "ConnectionStats",
    "CookieRejected",
    "DFlag",
    "DecodeError",
    "DistError",
    "DistTimeout",
    "EncodeError",
    "EpmdUnreachable",
    "Export",
    "FrozenList",
    "FrozenMap",
    "Fun",
    "HandshakeError",
    "ImproperList",
    "LocalNode",
    "NodeAddress",
    "NodeDown",
    "NodeNotFound",
    "NotAllowed",
    "Pid",
    "Port",
    "Process",
    "ProtocolError",
    "Ref",
    "RpcError",
    "StrictKey",
    "Term",
    "binary_to_term",
    "charlist",
    "port_please",
    "resolve_cookie",
    "split_node_name",
    "term_to_binary",
]
