"""``arsenal.store`` — Arsenal's embedded SQLite database: trace sessions now, audit and
checkpoints as they land. One file, ``$ARSENAL_HOME/arsenal.db``, in WAL mode."""

from .checkpoints import Checkpoint, CheckpointStore
from .db import Store, default_home
from .read_only import ReadOnlyNodes
from .sandboxes import ModuleVersion, SandboxRecord, SandboxStore
from .traces import TraceRecord, TraceStore

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "ModuleVersion",
    "ReadOnlyNodes",
    "SandboxRecord",
    "SandboxStore",
    "Store",
    "TraceRecord",
    "TraceStore",
    "default_home",
]
