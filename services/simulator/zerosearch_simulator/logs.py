"""Structured logs: one JSON object per line, with the request id of the request being served."""

from __future__ import annotations

import json
import logging
import re
import time

from zerosearch_simulator.middleware import request_id_var


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "request_id": request_id_var.get(),
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


# The last exception of a traceback, when it is one of ZeroSearch's own (raised on purpose, with a message).
_OWN_ERROR = re.compile(r"^zerosearch_\w+(?:\.\w+)*\.\w+Error: (.*)", re.MULTILINE | re.DOTALL)


class StartupErrorFilter(logging.Filter):
    """uvicorn logs the whole traceback of a failed start-up. When the failure is a ZeroSearch error (a model
    that cannot be found, a backend that is not installed), its message already says what to do: keep that
    line alone. Any other start-up failure keeps its traceback (a bug needs it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error" and record.levelno >= logging.ERROR:
            message = record.getMessage()
            if message.startswith("Traceback") and (match := _OWN_ERROR.search(message)):
                record.msg, record.args = "start-up failed: %s", (" ".join(match.group(1).split()),)
        return True


def configure_logging(level: str = "info") -> dict:
    """Configure the root logger and return a uvicorn log_config that uses the same format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(StartupErrorFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log duplicates ours (which has the request id and the route): keep it off.
    return {"version": 1, "disable_existing_loggers": False,
            "loggers": {"uvicorn": {"level": level.upper()}, "uvicorn.access": {"level": "WARNING"}}}
