"""The answer a decider gives to a gate's ``inputs``, validated with a pydantic model
built from the gate's declaration (``runs.policies.InputSpec``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, create_model

from runs.policies import GatePolicy


def answers_validate(policy: GatePolicy, raw: Mapping[str, Any], *, approving: bool) -> dict:
    """The decider's answer to the gate's ``inputs``, validated and typed.

    ``raw`` holds what was sent (strings from a form or ``--input key=value``,
    or typed values); empty strings count as not given. Required fields are
    required only to approve. Returns the given fields, typed (numbers as
    numbers, booleans as booleans). Raises ``ValueError`` naming each problem in
    plain words, and for a field the gate does not ask for.
    """
    asked = {spec.name: spec for spec in policy.inputs}
    unknown = sorted(set(raw) - set(asked))
    if unknown:
        raise ValueError(f"This gate does not ask for {', '.join(map(repr, unknown))}.")
    given = {name: value for name, value in raw.items() if value not in ("", None)}
    fields: dict[str, Any] = {}
    for spec in policy.inputs:
        kind: Any = {"string": str, "number": float, "integer": int, "boolean": bool}[spec.type]
        if spec.choices:
            kind = Literal[spec.choices]
        constraints: dict[str, Any] = {"title": spec.title}
        if spec.type == "number":
            constraints["allow_inf_nan"] = False  # NaN and infinity are no amount
        if spec.minimum is not None and spec.type in ("number", "integer"):
            constraints["ge"] = spec.minimum
        if spec.maximum is not None and spec.type in ("number", "integer"):
            constraints["le"] = spec.maximum
        if spec.max_length is not None and spec.type == "string":
            constraints["max_length"] = spec.max_length
        required = spec.required and approving
        fields[spec.name] = (
            (kind, Field(**constraints)) if required else (kind | None, Field(None, **constraints))
        )
    model = create_model("GateAnswer", __config__=ConfigDict(extra="forbid"), **fields)
    try:
        answer = model.model_validate(given)
    except ValidationError as error:
        raise ValueError(
            " ".join(
                f"{asked[str(problem['loc'][0])].title if problem['loc'] else 'Answer'}: "
                f"{_plain(problem)}."
                for problem in error.errors(include_url=False)
            )
        ) from None
    return {name: value for name, value in answer.model_dump().items() if name in given}


def _plain(problem: Any) -> str:
    """A pydantic problem in the words of a form."""
    match problem["type"]:
        case "missing":
            return "required to approve"
        case "float_parsing" | "float_type":
            return "give a number"
        case "int_parsing" | "int_type" | "int_from_float" | "int_parsing_size":
            return "give a whole number"
        case "finite_number":
            return "give a finite number"
        case "bool_parsing" | "bool_type":
            return "give yes or no"
        case "literal_error":
            return "choose one of the offered values"
        case _:
            return str(problem["msg"]).rstrip(".").lower()
