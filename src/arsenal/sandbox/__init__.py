"""Peer BEAM nodes that Arsenal starts, limits, feeds code into and tears down."""
