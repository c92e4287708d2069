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
any other table          dict (the empty table too: ``{}``), keys as
                         below
function, userdata,      LuaOpaque(type, text), text being tostring()
thread
=======================  ==============================================

Keys of a dict are converted like values, with three exceptions so that no
two Lua keys become one Python key:

- a key that is itself a table becomes a :class:`LuaTableKey` (a LuaOpaque
  of type "table", text "<table key>"), whose ``table`` holds the key's
  contents (or the cycle/depth-limit marker that replaced them); it is equal
  only to itself, as a Lua table key is;
- ``true``/``false`` stay ``True``/``False`` unless the same table also has
  the number key they equal in Python (``1``/``0``): then the boolean keys
  become ``LuaBoolKey(True)``/``LuaBoolKey(False)``, so
  ``{[1] = "a", [true] = "b"}`` gives ``{1: "a", LuaBoolKey(True): "b"}``;
- function, userdata and thread keys of one table that share their
  ``tostring`` text become :class:`LuaOpaqueKey` keys (equal only to
  themselves).

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
from typing import Any, Dict, List, Set


@dataclass(frozen=True)
class LuaOpaque:
    """A Lua value with no Python data form, or a cut-off marker."""

    type: str
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, eq=False)
class LuaTableKey(LuaOpaque):
    """A table used as a key of a table: ``type`` "table", ``text``
    "<table key>" (as before this class existed) and ``table`` the key's
    contents, converted like any value (a list, a dict, or the LuaOpaque
    marker of a cycle or of the depth limit). Equal only to itself: two
    tables with the same contents are two keys in Lua too."""

    table: Any = None

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


@dataclass(frozen=True, eq=False)
class LuaOpaqueKey(LuaOpaque):
    """A function, userdata or thread key whose ``tostring`` text another
    such key of the same table shares (a ``__tostring`` metamethod, text cut
    at 1024 bytes), so that LuaOpaque keys, equal by value, would merge two
    Lua keys into one. ``type`` and ``text`` are the LuaOpaque's; equal only
    to itself, as the Lua key is."""

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


@dataclass(frozen=True)
class LuaBoolKey:
    """A boolean key of a table that also has the number key the boolean
    equals in Python (``true`` and ``1``, ``false`` and ``0``), which a dict
    could not keep apart: ``{[1] = "a", [true] = "b"}`` becomes
    ``{1: "a", LuaBoolKey(True): "b"}``. ``bool(key)`` is ``key.value``."""

    value: bool

    def __bool__(self) -> bool:
        return self.value


_SPECIAL_FLOATS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _table(pairs: List[List[Any]]) -> Dict[Any, Any]:
    """The dict of a non-sequence table from its decoded [key, value] pairs."""
    try:
        out = dict(pairs)
    except TypeError:  # a table key (a list or a dict) is not hashable
        return _table_keys(pairs)
    # No key was merged into another and none is an opaque value (a
    # cycle/depth marker standing for a table key): the common case.
    if len(out) == len(pairs) and LuaOpaque not in map(type, out):
        return out
    return _table_keys(pairs)


def _table_keys(pairs: List[List[Any]]) -> Dict[Any, Any]:
    """_table for tables with table keys or keys Python would merge."""
    # Python's True == 1 and False == 0 (1.0, 0.0 too): a boolean key whose
    # number is also a key of the table is wrapped so that both stay.
    numbers = {k for k, _ in pairs if type(k) in (int, float) and k in (0, 1)}
    # Opaque keys that two Lua keys share (the same tostring text).
    seen: Set[LuaOpaque] = set()
    shared: Set[LuaOpaque] = set()
    for k, _ in pairs:
        if type(k) is LuaOpaque:
            (shared if k in seen else seen).add(k)
    out: Dict[Any, Any] = {}
    for k, v in pairs:
        if isinstance(k, (list, dict)) or (type(k) is LuaOpaque and k.type == "table"):
            # A table, or the cycle/depth marker that stands for one.
            k = LuaTableKey("table", "<table key>", k)
        elif type(k) is bool and k in numbers:
            k = LuaBoolKey(k)
        elif type(k) is LuaOpaque and k in shared:
            k = LuaOpaqueKey(k.type, k.text)
        out[k] = v
    return out


def _hook(obj: Dict[str, Any]) -> Any:
    pairs = obj.get("$t")
    if pairs is not None:
        return _table(pairs)
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
    # One integer (`return 2 + 2`, a count, a status) is the commonest
    # result; json takes ~2 us of a 13 us call for it.
    inner = data[1:-1]
    if data[:1] == b"[" and data[-1:] == b"]" and (inner.isdigit() or (inner[:1] == b"-" and inner[1:].isdigit())):
        return [int(inner)]
    text = data.decode("utf-8")
    # Objects only appear for tagged values; plain data skips the hook.
    return (_tagged if "{" in text else _plain).decode(text)
