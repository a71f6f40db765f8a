#!/usr/bin/env python3
"""llama-cpp-python's OpenAI-compatible server, with three compatibility fixes.

Run it exactly like `python -m llama_cpp.server` (same flags). It is that
server, with three changes that make it behave like vLLM where council
relies on it:

1. A small ASGI middleware in front of POST .../chat/completions rewrites

  response_format {"type": "json_schema", "json_schema": {"schema": S, ...}}
  becomes         {"type": "json_object", "schema": S}

The first form is the one OpenAI and vLLM accept and the one council's vllm
adapter sends; llama-cpp-python 0.3.x only knows the second: its request
model rejects any other type, and the server reports that as HTTP 500. The
schema becomes a GBNF grammar (llama-cpp-python's Python port of llama.cpp's
json-schema-to-grammar) that constrains sampling token by token. "strict"
and "name" are dropped; the grammar is always strict. The port enforces
type, properties, required, additionalProperties, enum, const, maxItems,
minItems, maxLength, minLength and pattern, but not minimum/maximum: bound an
integer with an enum.

2. The grammar rule for a character inside a JSON string excludes control
characters (U+0000-U+001F, U+007F), as llama.cpp's own converter does.
llama-cpp-python 0.3.x allows them, so a model that samples a raw newline or
carriage return inside a string produces output that is not valid JSON.

3. GET /v1/models answers at once. llama-cpp-python's handler waits for the
model lock, so a health check stalls behind every queued completion.

Nothing else is changed: inference, tokenizer, sampling, streaming and
errors are llama-cpp-python's own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Awaitable, Callable, MutableMapping

import uvicorn
from llama_cpp import llama_grammar
from llama_cpp.server.app import create_app
from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# llama.cpp's json-schema-to-grammar "char" rule (common/json-schema-to-grammar.cpp).
JSON_CHAR_RULE = (
    r'[^"\\\x7F\x00-\x1F] | '
    r'[\\] (["\\bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
)


def fix_json_string_grammar() -> None:
    """Make JSON-schema grammars reject raw control characters in strings."""
    rules = llama_grammar.PRIMITIVE_RULES
    rules["char"] = llama_grammar.BuiltinRule(JSON_CHAR_RULE, rules["char"].deps)


def rewrite_body(body: bytes) -> bytes:
    """Return body with a json_schema response_format turned into json_object+schema."""
    try:
        data = json.loads(body)
    except ValueError:
        return body  # let the server report it
    if not isinstance(data, dict):
        return body
    rf = data.get("response_format")
    if not isinstance(rf, dict) or rf.get("type") != "json_schema":
        return body
    js = rf.get("json_schema")
    if isinstance(js, dict) and "schema" in js:
        data["response_format"] = {"type": "json_object", "schema": js["schema"]}
    else:
        data["response_format"] = {"type": "json_object"}
    return json.dumps(data).encode("utf-8")


class Compat:
    """ASGI middleware: rewrite_body on chat completions, a lock-free /v1/models."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        model_ids: list[str],
        api_key: str | None,
    ):
        self.app = app
        self.models = json.dumps(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "owned_by": "me", "permissions": []}
                    for m in model_ids
                ],
            }
        ).encode("utf-8")
        self.auth = f"Bearer {api_key}".encode("utf-8") if api_key else None

    async def models_response(self, scope: Scope, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        if self.auth is not None and headers.get(b"authorization") != self.auth:
            status, body = 401, b'{"error":{"message":"Invalid API key","type":"invalid_request_error"}}'
        else:
            status, body = 200, self.models
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") == "GET"
            and scope.get("path", "").rstrip("/") == "/v1/models"
        ):
            await self.models_response(scope, send)
            return
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not scope.get("path", "").endswith("/chat/completions")
        ):
            await self.app(scope, receive, send)
            return

        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away before sending its body
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = rewrite_body(b"".join(chunks))

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # disconnect detection while streaming

        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await self.app(dict(scope, headers=headers), replay, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args_from_model(parser, Settings)
    args = parser.parse_args()
    fix_json_string_grammar()
    server_settings = parse_model_from_args(ServerSettings, args)
    model_settings = [parse_model_from_args(ModelSettings, args)]
    app = create_app(server_settings=server_settings, model_settings=model_settings)
    model_ids = [m.model_alias or m.model for m in model_settings]
    uvicorn.run(
        Compat(app, model_ids, server_settings.api_key),
        host=server_settings.host,
        port=server_settings.port,
        log_level=os.environ.get("COUNCIL_LLM_LOG_LEVEL", "warning"),
    )


if __name__ == "__main__":
    sys.exit(main())
