"""Input no route can take, refused before any route sees it, so no input ends in a 500.

- A NUL character (or, in a JSON string, an unpaired surrogate) anywhere in the path, the query
  string, a form or a JSON body, keys included: PostgreSQL text cannot hold NUL and UTF-8 cannot
  hold a lone surrogate, so such a string would reach the database only to fail there. 422
  `invalid_characters`; for the OCPP upgrade 400, the answer RFC 6455 §4.2.2 gives a client whose
  handshake the server will not take, before any charger lookup.
- A JSON body that is not JSON, or nested deeper than `MAX_JSON_DEPTH`: 400 `invalid_json`. The
  stdlib parser recurses per level, so a body of 100,000 brackets would end in a RecursionError;
  here that is caught in the one place bodies are parsed, and nothing deeper than the limit goes on
  to the schemas (which recurse too).

One `before_request` on the app, so every route gets it: the REST API, `/healthz`, the OCPP upgrade.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, request

from csms.errors import error_response

MAX_JSON_DEPTH = 64
_REFUSED = re.compile("[\x00\ud800-\udfff]")
_OCPP_PATH_PREFIX = "/ocpp/"  # by path: a request that is not a proper upgrade matches no route


class Refused(Exception):
    def __init__(self, code: str, message: str, details: dict[str, Any]):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


def _check_strings(location: str, strings) -> None:
    for value in strings:
        if value is not None and _REFUSED.search(value):  # a multipart part may come without a name
            raise Refused(
                "invalid_characters",
                "the request contains a NUL character or an unpaired surrogate, which no field accepts",
                {"location": location},
            )


def _check_json(data: bytes) -> None:
    try:
        document = json.loads(data)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise Refused("invalid_json", "the body is not valid JSON", {"reason": str(exc)}) from None
    strings: list[str] = []
    pending = [(document, 1)]
    while pending:  # iterative: the document may be almost as deep as the parser allowed
        value, depth = pending.pop()
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            if isinstance(value, dict):
                strings.extend(value)
                value = value.values()
            pending.extend((item, depth + 1) for item in value)
    _check_strings("json", strings)


def _too_deep() -> Refused:
    return Refused(
        "invalid_json",
        f"the body is nested deeper than {MAX_JSON_DEPTH} levels",
        {"maxDepth": MAX_JSON_DEPTH},
    )


def check_request() -> None:
    """Raise Refused for a request that carries input no route accepts."""
    _check_strings("path", (request.path,))
    _check_strings("query", (text for pair in request.args.items(multi=True) for text in pair))
    if request.is_json:
        data = request.get_data(cache=True)
        if data:
            _check_json(data)
    elif request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if request.mimetype == "application/x-www-form-urlencoded":
            request.get_data(cache=True)  # parsing consumes the body: keep it for a route reading it raw
        _check_strings("form", (text for pair in request.form.items(multi=True) for text in pair))


def init_app(app: Flask) -> None:
    @app.before_request
    def refuse_unacceptable_input():
        try:
            check_request()
        except Refused as refused:
            upgrade = request.path.startswith(_OCPP_PATH_PREFIX)
            status = 400 if upgrade or refused.code == "invalid_json" else 422
            return error_response(status, refused.code, refused.message, refused.details)
        return None
