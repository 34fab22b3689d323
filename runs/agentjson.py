"""JSON for agent data: stores anything NeuroCore's SQLiteRunStore stores.

NeuroCore serialises run data with ``json.dumps(value, default=str)``: values JSON
cannot hold become strings, and NaN, Infinity, NUL characters and lone
surrogates pass through. PostgreSQL's ``jsonb`` refuses the last four and
SQLite's ``JSON_VALID`` check refuses NaN and Infinity; ``jsonb`` also rewrites
numbers (the float ``1e+16`` comes back as an integer, ``-0.0`` as ``0.0``). Such
a document is stored as a one-key wrapper holding its JSON text (pure ASCII,
always accepted) and unwrapped on load, identically on both databases. Every
other document is stored as plain JSON that the database can query. A document
that happens to look like the wrapper is wrapped too, so decoding is never
ambiguous.

``jsonb`` also reorders an object's keys (shorter first). An object whose keys
jsonb would reorder carries their order in one more key, ``ORDER_KEY``, which
the decoder uses and removes: documents read back in the order they were
written on both databases, as NeuroCore's store returns them, and stay
queryable by key. A document that holds ``ORDER_KEY`` itself is wrapped.
"""

from __future__ import annotations

import json
import re
from typing import Any

WRAPPER_KEY = "__neurocore_console_json__"
ORDER_KEY = "__neurocore_console_key_order__"

# What jsonb cannot hold or would not give back as written: the NUL escape
# json.dumps writes, lone surrogates (written raw when ensure_ascii is off;
# valid pairs are already combined), floats in exponent form and negative zero.
# A match inside a string only costs an unneeded (lossless) wrap.
_UNSTORABLE = re.compile(r"\\u0000|[\ud800-\udfff]|[0-9][eE]|-0\.0(?![0-9])")


def _is_wrapper_shaped(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and WRAPPER_KEY in value


def _jsonb_order(key: str) -> tuple[int, bytes]:
    """Where jsonb puts a key: shorter (in bytes) first, then bytewise."""
    raw = key.encode("utf-8", "surrogatepass")
    return len(raw), raw


def _holds_order_key(value: Any) -> bool:
    if isinstance(value, dict):
        return ORDER_KEY in value or any(_holds_order_key(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_order_key(v) for v in value)
    return False


def _reordered_by_jsonb(value: Any) -> bool:
    """Whether jsonb would change the key order of an object in ``value``."""
    if isinstance(value, list):
        return any(_reordered_by_jsonb(item) for item in value)
    if not isinstance(value, dict):
        return False
    keys = [str(key) for key in value]
    return keys != sorted(keys, key=_jsonb_order) or any(
        _reordered_by_jsonb(item) for item in value.values()
    )


def _with_key_order(value: Any) -> Any:
    """``value`` with ``ORDER_KEY`` added to each object whose key order jsonb would change."""
    if isinstance(value, list):
        return [_with_key_order(item) for item in value]
    if not isinstance(value, dict):
        return value
    ordered = {key: _with_key_order(item) for key, item in value.items()}
    keys = [str(key) for key in value]
    if keys != sorted(keys, key=_jsonb_order):
        ordered[ORDER_KEY] = keys
    return ordered


def _in_key_order(value: dict[str, Any]) -> dict[str, Any]:
    """An object hook: put an object's keys back in their written order."""
    order = value.pop(ORDER_KEY, None)
    if not isinstance(order, list):
        return value
    return {key: value[key] for key in order if key in value}


class AgentJSONEncoder(json.JSONEncoder):
    """Encode like ``json.dumps(value, default=str)``, wrapping what jsonb refuses."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["default"] = str
        kwargs["ensure_ascii"] = False
        kwargs["allow_nan"] = False
        super().__init__(**kwargs)

    def encode(self, o: Any) -> str:
        try:
            text = super().encode(o)
        except ValueError:  # NaN or Infinity somewhere in the document
            text = None
        if (
            text is None
            or _UNSTORABLE.search(text)
            or _is_wrapper_shaped(o)
            or (ORDER_KEY in text and _holds_order_key(o))
        ):
            return json.dumps({WRAPPER_KEY: json.dumps(o, default=str)})
        if _reordered_by_jsonb(o):  # keep its objects' key order through jsonb
            return super().encode(_with_key_order(o))
        return text


class AgentJSONDecoder(json.JSONDecoder):
    """Decode what :class:`AgentJSONEncoder` wrote, unwrapping wrapped documents."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("object_hook", _in_key_order)
        super().__init__(**kwargs)

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        value = super().decode(s, *args, **kwargs)
        if _is_wrapper_shaped(value) and isinstance(value[WRAPPER_KEY], str):
            return json.loads(value[WRAPPER_KEY])
        return value
