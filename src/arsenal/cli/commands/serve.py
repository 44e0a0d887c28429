"""``arsenal serve``: attach to nodes and serve the REST + WebSocket API over HTTP."""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer

from ..main import CookieOption, app, errors, run_job

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    node: Annotated[
        list[str] | None,
        typer.Option(
            "--node",
            "-n",
            help="A node to attach (repeatable; the first is the default). Env: ARSENAL_NODE.",
        ),
    ] = None,
    cookie: CookieOption = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 4000,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Attach every node read-only: no write reaches them.")
    ] = False,
    unsafe_bind_all: Annotated[
        bool,
        typer.Option(
            "--unsafe-bind-all",
            help="Allow a non-loopback --host (the API has no authentication yet).",
        ),
    ] = False,
    demo: Annotated[bool, typer.Option("--demo", help="Start the bundled demo node and serve it.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each node.")] = 10.0,
) -> None:
    """Serve the REST + WebSocket API (/api/v1/...) for the attached nodes."""
    if not _is_loopback(host) and not unsafe_bind_all:
        errors.print(
            f"[red]error:[/red] refusing to bind {host}: the API has no authentication yet, so anyone who "
            "can reach the port could operate your nodes. Use a loopback address (the default 127.0.0.1), "
            "or pass --unsafe-bind-all if you really mean it",
            highlight=False,
        )
        raise typer.Exit(2)
    names = list(node or [])
    if not names and os.environ.get("ARSENAL_NODE"):
        names = [os.environ["ARSENAL_NODE"]]
    if demo:
        from ...demo import DemoError, DemoNode

        try:
            names.append(DemoNode().start())
        except DemoError as exc:
            errors.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
    if not names:
        errors.print("[red]error:[/red] say which node(s) to serve: --node name@host (repeatable), or --demo")
        raise typer.Exit(2)

    errors.print(
        "[yellow]warning:[/yellow] the Arsenal API has no authentication yet: anyone who can reach "
        f"{host}:{port} can run every operation on {', '.join(names)}"
        + (" (read-only)" if read_only else "")
        + ". Keep it on loopback.",
        highlight=False,
    )

    serve_nodes(names, cookie=cookie, host=host, port=port, read_only=read_only, timeout=timeout)


def serve_nodes(
    names: list[str], *, cookie: str | None, host: str, port: int, read_only: bool, timeout: float
) -> None:
    """Attach ``names`` and serve the API until interrupted (also used by ``arsenal demo``)."""

    async def job() -> None:
        import uvicorn

        from ...api import create_app
        from ...client import Arsenal

        async with Arsenal(cookie=cookie) as service:
            for name in names:
                await service.attach(name, timeout=timeout, read_only=read_only)
            from ...sandbox.manager import SandboxManager

            restarted = await service.services.get(SandboxManager).start_persistent()
            if restarted:
                errors.print(f"started persistent sandboxes: {', '.join(restarted)}", highlight=False)
            api = create_app(service)
            config = uvicorn.Config(api, host=host, port=port, log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            errors.print(
                f"serving {', '.join(n.name for n in service.pool.nodes)} on http://{host}:{port}/api/v1 "
                f"(docs: http://{host}:{port}/api/v1/docs)",
                highlight=False,
            )
            await server.serve()

    run_job(job)
