"""A sandbox's resource limits, and how each is enforced.

| limit | enforced by | when it is broken |
|---|---|---|
| ``max_processes`` | the VM (``+P``) | ``spawn`` fails with ``system_limit``; the node lives |
| ``max_heap_mb`` | the VM (``+hmax``, ``+hmaxk``) | that one process is killed; the node lives |
| ``max_memory_mb`` | the node's watchdog (``erlang:memory(total)``); the OS | the node stops: ``memory`` |
| ``schedulers`` | the VM (``+S N:N``, ``+SDcpu``) | never: the node simply gets no more cores |
| ``cpu_seconds`` | the OS (``RLIMIT_CPU``) | the node is killed (``SIGXCPU``), reason ``cpu_time`` |
| ``lifetime_s`` | the node's watchdog, and Arsenal | the node stops, reason ``lifetime`` |

The OS address-space limit is set above the memory limit (the VM reserves address space
it never touches: thread stacks, the JIT's code area), so the watchdog, which measures
what the VM really allocated, normally acts first and says so; the OS limit catches a
burst that grows faster than the watchdog looks.
"""

from __future__ import annotations

import os
import resource

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SandboxLimits"]

WORD = 8
ADDRESS_SPACE_HEADROOM_MB = 768


class SandboxLimits(BaseModel):
    """What a sandbox may use. The defaults suit an experiment on a laptop."""

    model_config = ConfigDict(extra="forbid")

    max_processes: int = Field(
        32768, ge=1024, le=1_048_576, description="Process limit (+P; the VM's minimum is 1024)."
    )
    max_heap_mb: int = Field(
        256,
        ge=0,
        le=65536,
        description="Heap limit of any one process, MiB; 0 for none (+hmax, the process is killed).",
    )
    max_memory_mb: int = Field(
        1024, ge=128, le=262_144, description="Memory of the whole node, MiB; the node stops past it."
    )
    schedulers: int = Field(
        1, ge=1, le=64, description="Scheduler threads (CPU cores the node can use at once)."
    )
    cpu_seconds: int | None = Field(
        None,
        ge=1,
        le=86400 * 7,
        description="CPU time of the node's OS process, seconds (RLIMIT_CPU); none by default.",
    )
    lifetime_s: int = Field(
        3600, ge=10, le=86400 * 7, description="Wall-clock lifetime, seconds; the node stops after it."
    )

    def erl_args(self) -> list[str]:
        schedulers = min(self.schedulers, os.cpu_count() or 1)
        args = [
            "+P",
            str(self.max_processes),
            "+S",
            f"{schedulers}:{schedulers}",
            "+SDcpu",
            f"{schedulers}:{schedulers}",
        ]
        if self.max_heap_mb:
            words = self.max_heap_mb * 1024 * 1024 // WORD
            args += ["+hmax", str(words), "+hmaxk", "true"]
        return args

    def rlimits(self) -> dict[int, int | tuple[int, int]]:
        limits: dict[int, int | tuple[int, int]] = {
            resource.RLIMIT_AS: (self.max_memory_mb + ADDRESS_SPACE_HEADROOM_MB) * 1024 * 1024
        }
        if self.cpu_seconds is not None:
            # The soft limit sends SIGXCPU (so the reason can be told); the hard one, later, SIGKILL.
            limits[resource.RLIMIT_CPU] = (self.cpu_seconds, self.cpu_seconds + 5)
        return limits

    def env(self) -> dict[str, str]:
        return {
            "ARSENAL_SANDBOX_LIFETIME_MS": str(self.lifetime_s * 1000),
            "ARSENAL_SANDBOX_MEMORY_BYTES": str(self.max_memory_mb * 1024 * 1024),
        }
