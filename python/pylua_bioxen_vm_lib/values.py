"""Lua values returned by a chunk, as Python objects.

=======================  ==============================================
Lua                      Python
=======================  ==============================================
nil                      None
boolean                  bool
number                   int when integral (|n| <= 2**53, or a Lua 5.3+
                         integer), else float (nan and inf included)
string                   str when valid UTF-8, else bytes
table with keys 1..n     list
any other table          dict (the empty table too: ``{}``); a key that
                         is itself a table becomes a LuaOpaque
function, userdata,      LuaOpaque(type, text), text being tostring()
thread
=======================  ==============================================

Tables are converted by value, without calling metamethods. A table met
again inside itself becomes ``LuaOpaque("table", "<cycle>")``; nesting deeper
than 64 levels becomes ``LuaOpaque("table", "<depth limit>")``; past 16 MiB
of encoded values the rest is replaced by ``LuaOpaque("nil",
"<size limit>")``. See docs/values.md for the wire format.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Dict, List


@dataclass(frozen=True)
class LuaOpaque:
    """A Lua value with no Python data form, or a cut-off marker."""

    type: str
    text: str

    def __str__(self) -> str:
        return self.text


_SPECIAL_FLOATS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict)):
        return LuaOpaque("table", "<table key>")
    return key


def _hook(obj: Dict[str, Any]) -> Any:
    pairs = obj.get("$t")
    if pairs is not None:
        return {_hashable(k): v for k, v in pairs}
    if "$b" in obj:
        return base64.b64decode(obj["$b"])
    if "$f" in obj:
        return _SPECIAL_FLOATS[obj["$f"]]
    if "$o" in obj:
        return LuaOpaque(obj["$o"], obj.get("s", ""))
    return obj


_plain = json.JSONDecoder()
_tagged = json.JSONDecoder(object_hook=_hook)


def decode(data: bytes) -> List[Any]:
    """Decode the core's value encoding into a list of Python values."""
    if data == b"[]":
        return []
    text = data.decode("utf-8")
    # Objects only appear for tagged values; plain data skips the hook.
    return (_tagged if "{" in text else _plain).decode(text)
