"""kdag.api.openapi_schema: a pydantic model becomes a structural OpenAPI v3 schema.

Small throwaway models, one construct each; the real CRDs are tested in test_crdgen.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

import pytest
from pydantic import Field

from kdag.api.base import FreeForm, Quantity, SpecModel
from kdag.api.openapi_schema import SchemaError, model_schema, walk


class Inner(SpecModel):
    """An inner object."""

    size: int = Field(ge=1, le=10, description="Size.")


class Color(StrEnum):
    """A color."""

    RED = "red"
    BLUE = "blue"


class Sample(SpecModel):
    """A sample."""

    name: str = Field(min_length=1, max_length=5, pattern="^[a-z]+$", description="Name.")
    nickname: str | None = Field(default=None, description="Nickname.")
    inner: Inner | None = Field(default=None, description="The inner object.")
    inners: list[Inner] = Field(default_factory=list, max_length=3, description="Inners.")
    color: Color = Field(default=Color.RED, description="Color.")
    mode: Literal["fast", "slow"] | None = Field(default=None, description="Mode.")
    labels: dict[str, str] | None = Field(default=None, description="Labels.")
    cpu: Quantity | None = Field(default=None, description="CPU.")
    extra: FreeForm | None = Field(default=None, description="Anything.")
    ratio: float = Field(default=0.5, gt=0, lt=1, description="Ratio.")


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    return model_schema(Sample)


def prop(schema: Mapping[str, Any], name: str) -> Any:
    return schema["properties"][name]


def test_optional_fields_are_omitted_not_nullable(sample: dict[str, Any]) -> None:
    assert prop(sample, "nickname") == {"description": "Nickname.", "type": "string"}


def test_only_fields_without_defaults_are_required(sample: dict[str, Any]) -> None:
    assert sample["required"] == ["name"]


def test_referenced_models_are_inlined_and_the_field_description_wins(
    sample: dict[str, Any],
) -> None:
    assert prop(sample, "inner") == {
        "description": "The inner object.",
        "type": "object",
        "properties": {
            "size": {"description": "Size.", "type": "integer", "minimum": 1, "maximum": 10}
        },
        "required": ["size"],
    }


def test_list_items_keep_the_model_docstring_as_description(sample: dict[str, Any]) -> None:
    inners = prop(sample, "inners")
    assert inners["type"] == "array"
    assert inners["maxItems"] == 3
    assert inners["items"]["description"] == "An inner object."
    assert inners["items"]["properties"]["size"]["type"] == "integer"


def test_str_enums_and_literals_become_string_enums(sample: dict[str, Any]) -> None:
    assert prop(sample, "color") == {
        "description": "Color.",
        "type": "string",
        "enum": ["red", "blue"],
    }
    assert prop(sample, "mode") == {
        "description": "Mode.",
        "type": "string",
        "enum": ["fast", "slow"],
    }


def test_dicts_become_additional_properties(sample: dict[str, Any]) -> None:
    assert prop(sample, "labels") == {
        "description": "Labels.",
        "type": "object",
        "additionalProperties": {"type": "string"},
    }


def test_quantities_are_int_or_string_without_a_type(sample: dict[str, Any]) -> None:
    assert prop(sample, "cpu") == {"description": "CPU.", "x-kubernetes-int-or-string": True}


def test_free_form_objects_preserve_unknown_fields(sample: dict[str, Any]) -> None:
    assert prop(sample, "extra") == {
        "description": "Anything.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }


def test_string_bounds_are_kept(sample: dict[str, Any]) -> None:
    assert prop(sample, "name") == {
        "description": "Name.",
        "type": "string",
        "pattern": "^[a-z]+$",
        "minLength": 1,
        "maxLength": 5,
    }


def test_exclusive_bounds_become_openapi_v3_booleans(sample: dict[str, Any]) -> None:
    assert prop(sample, "ratio") == {
        "description": "Ratio.",
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1,
        "exclusiveMaximum": True,
    }


def test_defaults_and_titles_are_dropped(sample: dict[str, Any]) -> None:
    # The API server would write defaults into stored objects; pydantic applies them.
    for path, node in walk(sample):
        assert not {"default", "title"} & node.keys(), path


def test_forbidden_extra_fields_are_left_to_pruning(sample: dict[str, Any]) -> None:
    # A CRD may not say additionalProperties: false; the API server prunes unknown fields
    # and kubectl's field validation rejects them.
    assert "additionalProperties" not in sample
    assert "additionalProperties" not in prop(sample, "inner")


def test_recursive_models_are_rejected() -> None:
    class Tree(SpecModel):
        children: list[Tree] = Field(default_factory=list, description="Subtrees.")

    with pytest.raises(SchemaError, match="recursive"):
        model_schema(Tree)


def test_unions_of_two_types_are_rejected() -> None:
    class Either(SpecModel):
        value: int | str = Field(description="A number or a word.")

    with pytest.raises(SchemaError, match="anyOf of 2 schemas"):
        model_schema(Either)


def test_keywords_a_crd_cannot_express_are_rejected() -> None:
    class Odd(SpecModel):
        value: str = Field(description="Value.", json_schema_extra={"readOnly": True})

    with pytest.raises(SchemaError, match="readOnly"):
        model_schema(Odd)
