"""``python -m arsenal`` runs the command line."""

from arsenal.cli.main import app

app()
