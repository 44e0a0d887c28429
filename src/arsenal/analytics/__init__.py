"""Supervisor analytics: the restart history recorded from the agent, and alert rules."""

from .alerts import AlertEvaluator, AlertRule
from .history import RestartEvent, RestartHistory

__all__ = ["AlertEvaluator", "AlertRule", "RestartEvent", "RestartHistory"]
