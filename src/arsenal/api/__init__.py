"""The REST + WebSocket API, generated from the operation registry (``create_app``)."""

from .app import create_app
from .routes import RouteConflict

__all__ = ["RouteConflict", "create_app"]
