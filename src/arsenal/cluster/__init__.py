"""Clusters of nodes: a local N-node cluster for tests and demos, and membership (discovery,
joins and leaves) for an Arsenal attached to a cluster."""

from .local import ClusterError, LocalCluster

__all__ = ["ClusterError", "LocalCluster"]
