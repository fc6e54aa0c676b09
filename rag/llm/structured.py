"""Checking structured (JSON-schema) output, the same for every server."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from rag.errors import MalformedReplyError


def parse_structured(text: str, schema: Mapping[str, Any], server: str) -> Any:
    """The JSON in `text`, validated against `schema`.

    Raises `MalformedReplyError` naming `server` when the text is not JSON (a fenced
    ```json block is accepted: small models add one) or does not match the schema.
    """
    body = _unfenced(text.strip())
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        raise MalformedReplyError(
            f"{server} did not reply with JSON; try again, or choose a larger model."
        ) from None
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as err:
        raise MalformedReplyError(
            f"{server} replied with JSON that does not match the schema ({err.message}); "
            "try again, or choose a larger model."
        ) from None
    return data


def _unfenced(text: str) -> str:
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text.strip()
