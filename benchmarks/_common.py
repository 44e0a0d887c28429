"""What both benchmarks share: real BEAM nodes, Erlang helper modules, statistics, output.

Not a benchmark itself. The scripts next to it import it (a script's own directory
is first on ``sys.path``). Nodes are started by Arsenal's own launcher
(``arsenal.sandbox.launcher``): OS processes in their own session, killed as a group
(SIGKILL) when the benchmark ends, whatever way it ends, and halting by themselves if
the benchmark's process dies without cleaning up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = Path(os.environ.get("ARSENAL_BENCH_LOGS", Path(tempfile.gettempdir()) / "arsenal-bench-nodes"))

# Let the scripts run from a checkout without installing the package (uv run installs it anyway).
if str(ROOT / "src") not in sys.path:
    sys.path.insert(1, str(ROOT / "src"))

from arsenal.sandbox.launcher import HOST, BeamProcess, LaunchSpec, owner_watchdog, unique_alive  # noqa: E402


def new_cookie() -> str:
    return "arsenal_bench_" + secrets.token_hex(8)


# A started node (``.name``, ``.alive``, ``.kill()``, ``.log_path``): Arsenal's own launcher.
Node = BeamProcess


def _spec(
    prefix: str, cookie: str, code_path: Path | None, extra: Sequence[str], **options: Any
) -> LaunchSpec:
    """A named ``erl`` node that halts by itself once this Python process is gone (even after SIGKILL)."""
    alive = unique_alive(prefix)
    return LaunchSpec(
        alive=alive,
        cookie=cookie,
        code_paths=[code_path] if code_path is not None else [],
        args=[*owner_watchdog(), *extra],  # first: it watches during a long start-up too
        log_path=LOG_DIR / f"{alive}.log",
        **options,
    )


def start_node(
    prefix: str,
    cookie: str,
    *,
    code_path: Path | None = None,
    extra: list[str] | None = None,
    ready_marker: str | None = None,
    timeout: float = 60.0,
) -> Node:
    """``erl -sname <prefix>_<random> -setcookie <cookie> -noshell -noinput [-pa code_path] [extra]``.

    ``ready_marker``: also wait for this text in the node's output (EPMD knows a node before its
    ``-s``/``-eval`` start-up has run). The node runs in a session of its own (killed as a group)
    and watches this process (the launcher's ``owner_watchdog``: one check a second, in a process
    of its own, nothing measurable next to the calls being timed).
    """
    spec = _spec(prefix, cookie, code_path, extra or [], ready_marker=ready_marker)
    return BeamProcess.start(spec).wait_ready(timeout)


@contextmanager
def nodes() -> Iterator[list[Node]]:
    """Collect the nodes started inside the block; kill every one of them when it exits."""
    started: list[Node] = []
    try:
        yield started
    finally:
        for node in started:
            node.kill()


@contextmanager
def compiled(module: str, source: str) -> Iterator[Path]:
    """Compile one Erlang module (given as source text) with ``erlc``; yield its ebin directory."""
    if shutil.which("erlc") is None:
        raise RuntimeError("erlc is not installed (Erlang/OTP 25 or later is needed)")
    with tempfile.TemporaryDirectory(prefix="arsenal-bench-") as tmp:
        path = Path(tmp) / f"{module}.erl"
        path.write_text(source)
        subprocess.run(["erlc", "-o", tmp, str(path)], check=True, capture_output=True)
        yield Path(tmp)


def otp_release() -> str:
    out = subprocess.run(
        ["erl", "-noshell", "-noinput", "-eval", "io:put_chars(erlang:system_info(otp_release)), halt()."],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def announce(*details: str) -> str:
    """Print the line every benchmark starts with (OTP, Python, details, the machine's load);
    return the OTP release."""
    otp = otp_release()
    print(
        ", ".join(
            [f"OTP {otp}", f"Python {sys.version.split()[0]}", *details, f"{machine()['loadavg']} load"]
        )
    )
    return otp


class BenchArgs(argparse.ArgumentParser):
    """The options every benchmark has — ``--quick``, ``--json PATH``, ``--rounds N`` (``rounds`` by
    default, 2 with ``--quick``) — plus the script's own."""

    def __init__(self, doc: str, *, quick: str, rounds: int) -> None:
        super().__init__(description=doc.split("\n\n")[0])
        self.full_rounds = rounds
        self.add_argument("--quick", action="store_true", help=quick)
        self.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
        self.add_argument("--rounds", type=int, help=f"measured rounds (default {rounds}, quick 2)")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        parsed.rounds = parsed.rounds or (2 if parsed.quick else self.full_rounds)
        return parsed


# ---------------------------------------------------------------------- statistics and output


@dataclass
class Sample:
    """Per-round values of one measurement (lower is better unless said otherwise)."""

    name: str
    unit: str
    rounds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    @property
    def best(self) -> float:
        return min(self.rounds)

    @property
    def worst(self) -> float:
        return max(self.rounds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "median": self.median,
            "min": self.best,
            "max": self.worst,
            "rounds": self.rounds,
        }


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "host": HOST,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in load],
    }


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        if value >= 100:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def print_ratio(name: str, value: float) -> None:
    """The machine-readable line: ``RATIO <name> <value>``, to six significant digits (a fixed
    number of decimals loses the precision of a small ratio)."""
    print(f"RATIO {name} {value:.6g}")


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"results written to {path}")


def run_erl_eval(
    prefix: str, cookie: str, code_path: Path, expr: str, *, env: dict[str, str], timeout: float
) -> str:
    """Run ``expr`` on a fresh named node (``-eval``) and wait for it to halt; return its output.

    The node is killed as a group if it is still there when this returns, whatever way it returns.
    """
    node = BeamProcess.start(_spec(prefix, cookie, code_path, ["-eval", expr], env=env))
    try:
        status = node.proc.wait(timeout=timeout)
    finally:
        node.kill()
    text = node.log_path.read_text(errors="replace")
    if status != 0:
        raise RuntimeError(f"node {node.alive} failed (exit {status}):\n{text[-3000:]}")
    return text
