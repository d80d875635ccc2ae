"""Model pieces shared by both kinds: object metadata and standard conditions."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from kdag.api.base import StatusModel


class ObjectMeta(StatusModel):
    """The subset of Kubernetes object metadata kdag reads; the rest is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str | None = Field(default=None, description="Object name.")
    generate_name: str | None = Field(default=None, description="Name prefix for generated names.")
    namespace: str | None = Field(default=None, description="Object namespace.")
    uid: str | None = Field(default=None, description="Unique id assigned by the API server.")
    generation: int | None = Field(default=None, description="Spec generation.")
    labels: dict[str, str] | None = Field(default=None, description="Labels.")
    annotations: dict[str, str] | None = Field(default=None, description="Annotations.")
    creation_timestamp: str | None = Field(default=None, description="Creation time.")


class Condition(StatusModel):
    """A standard Kubernetes condition, so `kubectl wait --for=condition=X` works."""

    type: str = Field(description="Condition type, e.g. Succeeded.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str | None = Field(default=None, description="CamelCase reason for the status.")
    message: str | None = Field(default=None, description="Human-readable detail.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition describes."
    )
