"""Logging for the serving processes: text lines, or one JSON object per line (`CSMS_LOG_FORMAT=json`).

Business events are logged once each, with the ids they concern as `extra` fields
(`chargePointId`, `userId`, `transactionId`, `sessionId`, `webhookId`…): in text they read in the
message, in JSON they are fields of their own, for a log pipeline to index. Nothing secret is ever
passed: no password, key, token or webhook secret (tests/test_secrets_in_logs.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from csms.fastjson import dumps

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", <extra fields>, "exception"}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return dumps(document, default=str).decode()


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(config: dict[str, Any]) -> None:
    """The web process: INFO and up to stderr, in the configured format."""
    logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)
    use_format(config)


def use_format(config: dict[str, Any]) -> None:
    """Give every handler of the root logger the configured format (the worker keeps Dramatiq's
    handlers, which carry its lines to the parent process, and changes only their format)."""
    if config["LOG_FORMAT"] == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
