"""NetworkedLuaVM: the original library's networked VM.

Code execution works exactly as on :class:`BasicLuaVM`. The original's
LuaSocket helpers (``start_server``, ``start_client``, ``start_p2p``) are not
available in this release; they raise FeatureNotAvailableError naming what
to use instead. ``networked=True`` opens no socket and listens on nothing.
"""

from __future__ import annotations

from typing import Any, NoReturn

from .exceptions import FeatureNotAvailableError
from .vm import BasicLuaVM


class NetworkedLuaVM(BasicLuaVM):
    """A BasicLuaVM created with ``networked=True``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["networked"] = True
        super().__init__(*args, **kwargs)

    def _unavailable(self, what: str) -> NoReturn:
        raise FeatureNotAvailableError(
            f"NetworkedLuaVM.{what} (LuaSocket helpers) is not available in this release; "
            "run your own LuaSocket code with execute_string on a trusted process-engine VM "
            "(engine='process', lua_executable='lua5.4', sandbox=False: the sandbox loads no C "
            "modules such as socket) that has LuaSocket installed"
        )

    def start_server(self, port: int, timeout: float = 30.0) -> NoReturn:
        self._unavailable("start_server")

    def start_client(self, host: str, port: int, message: str = "", timeout: float = 30.0) -> NoReturn:
        self._unavailable("start_client")

    def start_p2p(self, local_port: int, peer_host: str, peer_port: int, **kwargs: Any) -> NoReturn:
        self._unavailable("start_p2p")
