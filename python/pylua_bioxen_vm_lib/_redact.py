"""Private: the one place that hides secrets in what the library shows.

Reprs, exception messages, log records and info/status dicts never carry a
password, key or the user information of a URL. The passwords themselves
never leave the objects that need them (``_config``, ``_password``); hosts
and URLs go through :func:`redact_userinfo` before they are formatted into
any text, and configs through :func:`redact_config` before they are shown.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

MARK = "***"

# Config keys whose values are secrets: shown as MARK.
SECRET_KEYS = frozenset(("xcp_password", "password", "vm_password"))

# Config keys whose values are URLs or hosts: shown without user information.
URL_KEYS = frozenset(("xcp_host", "xapi_url"))


def redact_userinfo(value: Any, mark: str = MARK) -> Any:
    """A URL or ``user:password@host`` with its user information replaced
    by mark: ``"https://root:pw@h/x@y"`` gives ``"https://***@h/x@y"``.
    Only the authority counts (an '@' in the path, query or fragment stays),
    unless a password holding '/', '?' or '#' cut it short
    (``"https://root:pa/ss@h"`` gives ``"https://***@h"``), as in the core's
    ``RedactUserinfo``. Anything but a string is returned
    as it is."""
    if not isinstance(value, str):
        return value
    start = 0
    i = value.find("://")
    if i >= 0:
        start = i + 3
    end = len(value)
    for j, c in enumerate(value[start:]):
        if c in "/?#":
            end = start + j
            break
    at = value.rfind("@", start, end)
    if at >= 0:
        return value[:start] + mark + value[at:]
    # A password holding '/', '?' or '#' ends the authority early (as in
    # the core): a ':' and no '@' in it, and an '@' later.
    if ":" in value[start:end]:
        at = value.rfind("@", end)
        if at >= 0:
            return value[:start] + mark + value[at:]
    return value


def redact_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of config to show: every secret as MARK, the user information
    of every URL or host as MARK."""
    shown: Dict[str, Any] = {}
    for key, value in config.items():
        if key in SECRET_KEYS and value:
            shown[key] = MARK
        elif key in URL_KEYS:
            shown[key] = redact_userinfo(value)
        else:
            shown[key] = value
    return shown
