"""kdag: DAG workflows on Kubernetes, one Job per node."""

__version__ = "0.1.0"
