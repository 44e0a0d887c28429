"""Erlang terms for people and programs.

:func:`render` prints a term as Erlang or Elixir source text, bounded for display;
:func:`to_json` / :func:`from_json` (and :func:`dumps` / :func:`loads`) convert terms
to and from a lossless tagged JSON form for APIs.
"""

from .render import render
from .tagged_json import TaggedJSONError, dumps, from_json, loads, to_json

__all__ = ["TaggedJSONError", "dumps", "from_json", "loads", "render", "to_json"]
