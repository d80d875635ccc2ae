"""Shared pydantic configuration and small types for the kdag API models.

Every model is camelCase on the wire (as Kubernetes objects are) and snake_case in Python.
Spec models forbid unknown fields so a typo is an error that names the field, never a
silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "kdag.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# Resource names (plurals) of the two kinds, as in API paths and RBAC rules.
RUNS = "workflowruns"
WORKFLOWS = "workflows"

# DNS-1123 label: what a node name must be so it can become part of a Job name and label.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# C identifier: what a param name must be so `params.x` works in templates and CEL.
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class SpecModel(BaseModel):
    """A user-written model: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict as it appears in a Kubernetes object, without unset fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(BaseModel):
    """A model the operator writes: camelCase aliases, unknown fields tolerated.

    Tolerating extras keeps an older operator from failing on a status written by a newer one.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict as it appears in a Kubernetes object, without unset fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _quantity_to_str(value: Any) -> Any:
    # Kubernetes accepts `cpu: 1` and `cpu: "1"` alike; keep one form internally.
    if isinstance(value, bool):
        return value  # let pydantic reject booleans with a clear message
    if isinstance(value, int | float):
        return str(value)
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "description": "A Kubernetes resource quantity such as 100m, 1, 64Mi or 2Gi.",
        }
    ),
]

FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

NodeName = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN),
]
