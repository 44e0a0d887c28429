"""``arsenal serve``: attach to nodes and serve the REST + WebSocket API over HTTP."""

from __future__ import annotations

import ipaddress
import logging
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
    host: Annotated[
        str, typer.Option(help="Address to bind (non-loopback needs --tls-cert/--tls-key).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 4000,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Attach every node read-only: no write reaches them, and they stay read-only (also "
            "when served again without this flag) until an admin lifts it (attach_node read_only=false).",
        ),
    ] = False,
    rate_limit: Annotated[float, typer.Option(min=1, help="Requests a second per API key.")] = 200.0,
    tls_cert: Annotated[str | None, typer.Option(help="PEM certificate: serve HTTPS.")] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    unsafe_bind_all: Annotated[
        bool,
        typer.Option(
            "--unsafe-bind-all", help="Allow a non-loopback --host without TLS (keys travel in clear)."
        ),
    ] = False,
    demo: Annotated[bool, typer.Option("--demo", help="Start the bundled demo node and serve it.")] = False,
    discover: Annotated[
        bool,
        typer.Option(
            "--discover",
            help="Also attach the nodes' visible peers, and follow the cluster: nodes that join are "
            "attached, those that leave are marked down (GET /api/v1/cluster/events).",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each node.")] = 10.0,
    sample_interval: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds between two samples of each node's vital signs (GET /metrics)."),
    ] = 10.0,
    log_format: Annotated[
        str, typer.Option(help="text, or json: one JSON object per line on stderr, with correlation ids.")
    ] = "text",
) -> None:
    """Serve the REST + WebSocket API (/api/v1/...) for the attached nodes."""
    if log_format not in ("text", "json"):
        errors.print(f"[red]error:[/red] --log-format {log_format}: use text or json", highlight=False)
        raise typer.Exit(2)
    if (tls_cert is None) != (tls_key is None):
        errors.print("[red]error:[/red] give both --tls-cert and --tls-key, or neither")
        raise typer.Exit(2)
    if not _is_loopback(host) and tls_cert is None and not unsafe_bind_all:
        errors.print(
            f"[red]error:[/red] refusing to bind {host} without TLS: API keys would cross the network in "
            "clear text. Give --tls-cert and --tls-key, use a loopback address (the default 127.0.0.1), "
            "or pass --unsafe-bind-all if a TLS proxy is in front",
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

    _key_hint()
    serve_nodes(
        names,
        cookie=cookie,
        host=host,
        port=port,
        read_only=read_only,
        timeout=timeout,
        tls=(tls_cert, tls_key),
        sample_interval=sample_interval,
        log_format=log_format,
        rate_limit=rate_limit,
        discover=discover,
    )


def _key_hint() -> None:
    """Every request needs an API key: say how to get one when there is none yet."""
    from ...security.keys import KeyStore
    from ...store import Store

    store = Store()
    try:
        if KeyStore(store).count_active() == 0:
            errors.print(
                "[yellow]note:[/yellow] every request needs an API key and there is none yet: "
                "create one with `arsenal keys create --role admin` (it works at once)",
                highlight=False,
            )
    finally:
        store.close()


def serve_nodes(
    names: list[str],
    *,
    cookie: str | None,
    host: str,
    port: int,
    read_only: bool,
    timeout: float,
    tls: tuple[str | None, str | None] = (None, None),
    sample_interval: float = 10.0,
    log_format: str = "text",
    rate_limit: float = 200.0,
    discover: bool = False,
) -> None:
    """Attach ``names`` and serve the API until interrupted (also used by ``arsenal demo``);
    ``discover``: attach their peers too and follow the cluster."""

    async def job() -> None:
        import uvicorn

        from ...api import create_app
        from ...client import Arsenal
        from ...telemetry import NodeSampler, configure_logging

        if log_format == "json":  # before attaching, so that every line from here on is JSON
            configure_logging(log_format, logging.getLogger().getEffectiveLevel())
        async with Arsenal(cookie=cookie) as service:
            # Without --read-only, a node held read-only stays so: only an admin lifts that.
            mode = True if read_only else None
            for name in names:
                await service.attach(name, timeout=timeout, read_only=mode)
            if discover:
                for name in names:
                    await service.discover(name, timeout=timeout, read_only=mode)
            from ...sandbox.manager import SandboxManager

            restarted = await service.services.get(SandboxManager).start_persistent()
            # Record supervisor restarts and evaluate the alert rules.
            from ...ops.analytics import start_recording

            await start_recording(service.services, service.pool.nodes)
            if restarted:
                errors.print(f"started persistent sandboxes: {', '.join(restarted)}", highlight=False)
            service.services.get(NodeSampler).start(service.pool, sample_interval)
            api = create_app(service, rate_limit=rate_limit)
            config = uvicorn.Config(
                api,
                host=host,
                port=port,
                log_level="warning",
                log_config=None if log_format == "json" else uvicorn.config.LOGGING_CONFIG,
                lifespan="off",
                ssl_certfile=tls[0],
                ssl_keyfile=tls[1],
            )
            server = uvicorn.Server(config)
            scheme = "https" if tls[0] else "http"
            errors.print(
                f"serving {', '.join(n.name for n in service.pool.nodes)}: the dashboard at "
                f"{scheme}://{host}:{port}/, the API at {scheme}://{host}:{port}/api/v1 "
                f"(docs: {scheme}://{host}:{port}/api/v1/docs)",
                highlight=False,
            )
            await server.serve()

    run_job(job)
