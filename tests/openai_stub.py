"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: `/v1/models` lists one model, and
each POST runs a behaviour (handler, JSON body) that writes the reply. Used for the engine's error
paths and for a compromised LLM."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What a handler does for one POST /v1/chat/completions: gets the JSON body, writes the reply.
Behaviour = Callable[["StubHandler", dict[str, Any]], None]


class StubHandler(BaseHTTPRequestHandler):
    behaviour: Behaviour
    requests: list[dict[str, Any]]
    model_id = "stub-model"

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def send_json(self, obj: Any, status: int = 200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.endswith("/models"):
            self.send_json({"object": "list", "data": [{"id": self.model_id, "object": "model", "created": 0, "owned_by": "me"}]})
        else:
            self.send_json({"error": {"message": "not found"}}, 404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        type(self).requests.append(body)
        type(self).behaviour(self, body)


class StubServer:
    """The stub on 127.0.0.1:<free port>, in a thread; `url` is its /v1 base."""

    def __init__(self, behaviour: Behaviour, *, model_id: str = "stub-model") -> None:
        self.handler = type("Handler", (StubHandler,), {"behaviour": staticmethod(behaviour), "requests": [], "model_id": model_id})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.handler.requests

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
