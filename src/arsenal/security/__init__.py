"""Who may do what: API keys and roles, the authorization hook, and the audit trail.

:func:`install` puts the role check and the audit trail into the operation registry's pipeline
(once); every :class:`arsenal.client.Arsenal` does it, so every way of running an operation —
Python API, REST, CLI — is checked and on record the same way.
"""

from __future__ import annotations

from ..ops.registry import AuditEvent, Registry
from .audit import AuditLog, redact
from .keys import ApiKey, KeyStore
from .roles import ROLES, authorize

__all__ = ["ROLES", "ApiKey", "AuditLog", "KeyStore", "authorize", "install", "redact"]


def record_in_store(event: AuditEvent) -> None:
    """The audit hook: into the calling Arsenal's own database."""
    if event.services is not None:
        AuditLog(event.services.store).record(event)


def install(registry: Registry) -> None:
    if authorize not in registry.authorizers:
        registry.authorizers.append(authorize)
    if record_in_store not in registry.auditors:
        registry.auditors.append(record_in_store)
