"""Distribution capability flags (``dist.h``), and the set Arsenal advertises."""

from __future__ import annotations

from enum import IntFlag

__all__ = ["DFlag", "ARSENAL_FLAGS", "REQUIRED_PEER_FLAGS"]


class DFlag(IntFlag):
    PUBLISHED = 0x1
    ATOM_CACHE = 0x2
    EXTENDED_REFERENCES = 0x4
    DIST_MONITOR = 0x8
    FUN_TAGS = 0x10
    DIST_MONITOR_NAME = 0x20
    HIDDEN_ATOM_CACHE = 0x40
    NEW_FUN_TAGS = 0x80
    EXTENDED_PIDS_PORTS = 0x100
    EXPORT_PTR_TAG = 0x200
    BIT_BINARIES = 0x400
    NEW_FLOATS = 0x800
    UNICODE_IO = 0x1000
    DIST_HDR_ATOM_CACHE = 0x2000
    SMALL_ATOM_TAGS = 0x4000
    UTF8_ATOMS = 0x10000
    MAP_TAG = 0x20000
    BIG_CREATION = 0x40000
    SEND_SENDER = 0x80000
    BIG_SEQTRACE_LABELS = 0x100000
    EXIT_PAYLOAD = 0x400000
    FRAGMENTS = 0x800000
    HANDSHAKE_23 = 0x1000000
    UNLINK_ID = 0x2000000
    MANDATORY_25_DIGEST = 0x4000000
    SPAWN = 1 << 32
    NAME_ME = 1 << 33
    V4_NC = 1 << 34
    ALIAS = 1 << 35


# OTP 25 refuses a peer without these; OTP 26 adds V4_NC and UNLINK_ID.
_MANDATORY = (
    DFlag.EXTENDED_REFERENCES
    | DFlag.FUN_TAGS
    | DFlag.NEW_FUN_TAGS
    | DFlag.EXTENDED_PIDS_PORTS
    | DFlag.EXPORT_PTR_TAG
    | DFlag.BIT_BINARIES
    | DFlag.NEW_FLOATS
    | DFlag.UTF8_ATOMS
    | DFlag.MAP_TAG
    | DFlag.BIG_CREATION
    | DFlag.HANDSHAKE_23
    | DFlag.V4_NC
    | DFlag.UNLINK_ID
)

# Not PUBLISHED (so we are a hidden node), and neither the atom cache nor
# fragments, so the peer never sends either.
ARSENAL_FLAGS = (
    _MANDATORY
    | DFlag.DIST_MONITOR
    | DFlag.DIST_MONITOR_NAME
    | DFlag.SEND_SENDER
    | DFlag.BIG_SEQTRACE_LABELS
    | DFlag.EXIT_PAYLOAD
    | DFlag.SPAWN
    | DFlag.ALIAS
)

# What the peer must offer for Arsenal to talk to it at all (OTP 23 and later).
REQUIRED_PEER_FLAGS = (
    DFlag.EXTENDED_REFERENCES
    | DFlag.EXTENDED_PIDS_PORTS
    | DFlag.BIT_BINARIES
    | DFlag.NEW_FLOATS
    | DFlag.UTF8_ATOMS
    | DFlag.MAP_TAG
    | DFlag.BIG_CREATION
    | DFlag.HANDSHAKE_23
)
