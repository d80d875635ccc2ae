"""Kubernetes resource quantity syntax, checked before a Job is ever created."""

from __future__ import annotations

import re

# The canonical grammar from k8s.io/apimachinery/pkg/api/resource: a signed decimal
# number followed by a binary SI (Ki..Ei), decimal SI (n, u, m, k, M..E) or exponent suffix.
_QUANTITY = re.compile(
    r"^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$"
)


def is_quantity(text: str) -> bool:
    return bool(_QUANTITY.match(text.strip())) and text == text.strip()
