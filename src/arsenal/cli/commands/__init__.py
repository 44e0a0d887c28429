"""CLI commands by category. Each module registers its commands on ``arsenal.cli.main.app``
and is imported by ``arsenal.cli.main`` (so categories can grow without touching it)."""
