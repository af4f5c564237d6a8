"""Structured logs: one JSON object per line on stderr, so log shippers need no parsing rules.

Callers attach fields with `log.info("msg", extra={"fields": {...}})`. API keys never reach a log line: the access
log records the key's name only. Covered by tests/service/test_api_health.py (access log) and test_cli.py.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_HANDLER_NAME = "brushprint-json"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """Route the service's and uvicorn's loggers through one JSON handler (idempotent)."""
    root = logging.getLogger()
    if not any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Our middleware writes the access log with request ids and key names; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
