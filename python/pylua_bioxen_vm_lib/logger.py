"""VMLogger: the original library's logger, on top of the ``logging`` module.

Log records go to the ``pylua_bioxen_vm_lib.<component>`` logger, so an
application configures them like any other library's. ``debug_mode=True``
(or the environment variable ``PYLUA_DEBUG=true``) sets that logger to DEBUG
and, when the application has configured no handler for the library, adds one
that prints to stderr — what the original's debug mode did. Nothing is
written to files unless ``enable_file_logging=True`` is given together with
``log_dir`` (the original created ``./logs`` in the current directory; this
one does not).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Optional, Union

from . import exceptions as exc

ROOT_LOGGER = "pylua_bioxen_vm_lib"
_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
# Held while looking for a handler and adding it, so that loggers made at
# once on several threads add each handler once (lines are not repeated).
_handlers_lock = threading.Lock()


class _FileHandler(logging.FileHandler):
    """A VMLogger's log file handler, shared by the VMLoggers of a component
    writing that file (``users`` counts them). Once closed it writes
    nothing: a record on its way through it (another thread took the
    logger's handlers before close removed it) reopened the file."""

    users = 0
    _done = False

    def close(self) -> None:
        with self.lock or contextlib.nullcontext():
            self._done = True
            super().close()

    def emit(self, record: logging.LogRecord) -> None:
        if not self._done:
            super().emit(record)


def env_debug() -> bool:
    """True when PYLUA_DEBUG asks for debug output (true/1/yes/on)."""
    return os.environ.get("PYLUA_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _ensure_console_handler() -> None:
    root = logging.getLogger(ROOT_LOGGER)
    with _handlers_lock:
        if not root.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(_FORMAT))
            handler._pylua_console = True  # type: ignore[attr-defined]
            root.addHandler(handler)


def enable_debug(component_logger: Optional[logging.Logger] = None) -> None:
    """Turn debug logging on for the library (or one component)."""
    target = component_logger or logging.getLogger(ROOT_LOGGER)
    target.setLevel(logging.DEBUG)
    _ensure_console_handler()


def _log_dir(log_dir: Any) -> Path:
    """log_dir as a Path: ArgumentTypeError unless a str or os.PathLike,
    InvalidArgumentError when empty (it would mean the current directory)
    or holding a NUL byte."""
    if not isinstance(log_dir, (str, os.PathLike)):
        raise exc.ArgumentTypeError(f"log_dir must be a str or os.PathLike, not {type(log_dir).__name__}")
    path = os.fspath(log_dir)
    if not isinstance(path, str):
        raise exc.ArgumentTypeError(f"log_dir must be a str or os.PathLike, not a path of {type(path).__name__}")
    if not path:
        raise exc.InvalidArgumentError("log_dir must name a directory, not ''")
    if "\0" in path:
        raise exc.InvalidArgumentError(f"log_dir {path!r} holds a NUL byte")
    return Path(path)


class VMLogger:
    """A named logger for one component of an application or of the library.

    Parameters mirror the original: ``debug_mode`` enables DEBUG output,
    ``component`` (a non-empty str) names the logger, ``log_dir``/``enable_file_logging``
    add a file handler only when both are given, writing
    ``log_dir/<component>.log`` (a component holding a path separator, or a
    log_dir that is empty or cannot hold the file, raises
    InvalidArgumentError then; a log_dir neither str nor os.PathLike,
    ArgumentTypeError).

    ``close()`` (or leaving a ``with`` block) detaches and closes that file
    handler once no other open VMLogger of the component writes the same
    file: they share one handler, so that lines are not repeated (a
    FileHandler of the application's for that file is used instead, and
    left to the application). The VMLogger goes on logging to the
    library's other handlers.
    """

    def __init__(
        self,
        debug_mode: bool = False,
        component: str = "VMManager",
        log_dir: Optional[Union[str, os.PathLike[str]]] = None,
        enable_file_logging: bool = False,
    ) -> None:
        if not isinstance(component, str):
            raise exc.ArgumentTypeError(f"component must be a non-empty str, not {type(component).__name__}")
        if not component:
            raise exc.InvalidArgumentError("component must be a non-empty str, not ''")
        if (
            enable_file_logging
            and log_dir is not None
            and any(sep and sep in component for sep in (os.sep, os.altsep, "\0"))
        ):
            # The log file is log_dir/<component>.log: "../x" wrote outside
            # log_dir, "a/b" raised a bare FileNotFoundError.
            raise exc.InvalidArgumentError(
                f"component {component!r} names the log file {component}.log: it must not hold a path separator"
            )
        self.component = component
        self.debug_mode = bool(debug_mode) or env_debug()
        self.logger = logging.getLogger(f"{ROOT_LOGGER}.{component}")
        if self.debug_mode:
            enable_debug(self.logger)
        self.log_file: Optional[Path] = None
        self._file_handler: Optional[_FileHandler] = None
        if enable_file_logging and log_dir is not None:
            directory = _log_dir(log_dir)
            self.log_file = directory / f"{component}.log"
            try:
                directory.mkdir(parents=True, exist_ok=True)
                self._add_file_handler(self.log_file)
            except OSError as err:
                # Not a bare FileExistsError, PermissionError, ...
                raise exc.InvalidArgumentError(
                    f"cannot write the log file {str(self.log_file)!r}: {err.strerror or err}"
                ) from err

    def _add_file_handler(self, log_file: Path) -> None:
        """A FileHandler for log_file, unless the logger has one already
        (then shared: a VMLogger's counts its users; the application's own
        is used, and left to the application)."""
        with _handlers_lock:
            for h in self.logger.handlers:
                if isinstance(h, logging.FileHandler) and Path(h.baseFilename).resolve() == log_file.resolve():
                    if isinstance(h, _FileHandler):
                        h.users += 1
                        self._file_handler = h
                    return
            handler = _FileHandler(log_file, encoding="utf-8")
            handler.setFormatter(logging.Formatter(_FORMAT))
            handler.users = 1
            self.logger.addHandler(handler)
            self._file_handler = handler

    def close(self) -> None:
        """Stop writing log_file (see the class); closing again does nothing."""
        with _handlers_lock:
            handler, self._file_handler = self._file_handler, None
            if handler is None:
                return
            handler.users -= 1
            if handler.users > 0:
                return
            self.logger.removeHandler(handler)
        handler.close()

    def __enter__(self) -> VMLogger:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.debug(msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.info(msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.warning(msg, *args, **kwargs)

    warn = warning

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.error(msg, *args, **kwargs)

    def critical(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.critical(msg, *args, **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.exception(msg, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<VMLogger component={self.component!r} debug_mode={self.debug_mode}>"
