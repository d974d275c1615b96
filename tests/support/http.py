"""A small HTTP client for tests that talk to a real server: JSON in and out, a bearer token once
logged in, and error answers returned (status, body) rather than raised."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class Http:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.token: str | None = None

    def __call__(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else {}

    def login(self, email: str, password: str = "password-123") -> Http:
        status, body = self("POST", "/api/auth/login", {"email": email, "password": password})
        assert status == 200, body
        self.token = body["access_token"]
        return self
