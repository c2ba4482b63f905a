"""A request body read into one of the layer's models: the JSON guards, then pydantic.

Apart from ``crm_bridge.api.http`` because it loads pydantic, which the redirect never does.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from crm_bridge.api.http import HttpRequest, invalid_fields


def validated_body[M: BaseModel](request: HttpRequest, model: type[M], max_body_bytes: int) -> M:
    """The body as ``model``, or the HttpProblem that refuses it (400, 413, 415, or 422 by field)."""
    body = request.json_body(max_body_bytes)
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise invalid_fields(error.errors(include_input=False)) from None
