"""`/openapi.json`: the admin API described from its route table and body Structs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from workers.admin.routes_decisions import Explanation
from workers.admin.routes_whoami import WhoAmI
from workers.admin.routing import Route
from workers.config.model import MONTH_PATTERN, USER_ID_PATTERN

__all__ = ["openapi_document"]

_PARAM = re.compile(r"\{([a-z_]+)\}")
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_BODY_ERRORS = (
    ("408", "the body did not arrive in time"),
    ("413", "body over 1 MiB"),
    ("415", "body not sent as Content-Type: application/json"),
)
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": 'The version read with GET, e.g. "3" (or `version` in the body); 409 if '
    "the item changed since, 422 if it is not a whole number.",
}
_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "user_id": {"type": "string", "pattern": USER_ID_PATTERN},
    "token_id": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
    "request_id": {"type": "string", "maxLength": 80},
    "month": {"type": "string", "pattern": MONTH_PATTERN},
    "fingerprint": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
}


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (the app's route table)."""
    types = sorted(
        {t for r in routes for t in (r.body, r.answer) if t is not None}, key=lambda t: t.__name__
    )
    _, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation_id = f"{route.method.lower()}_{route.path.strip('/').replace('/', '_')}"
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": _PARAM_SCHEMAS[name]}
            for name in _PARAM.findall(route.path)
        ]
        parameters += [
            {
                "name": q.name,
                "in": "query",
                "required": False,
                "schema": q.schema,
                "description": q.description,
            }
            for q in route.query
        ]
        op: dict[str, Any] = {
            "summary": route.summary,
            "description": f"Who may call it: {route.who}.",
            "operationId": operation_id.replace("{", "").replace("}", ""),
            "security": [{"bearer": []}],
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": _answer(route)}},
                },
                **{
                    code: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
                    for code, text in (
                        ("400", "malformed JSON"),
                        ("401", "no or invalid token"),
                        ("403", "this token may not do that"),
                        ("404", "not found"),
                        ("409", "changed since the version sent"),
                        ("422", "invalid value"),
                    )
                },
            },
        }
        if route.method == "POST":
            op["responses"]["201"] = {"description": "created"}
        for code, text in (*(_BODY_ERRORS if route.body is not None else ()), *route.errors):
            op["responses"][code] = {
                "description": text,
                "content": {"application/json": {"schema": _ERROR}},
            }
        if route.method == "PUT" and route.body is not None:
            op["parameters"].append(_IF_MATCH)
        if route.body is not None and route.method != "PUT":
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{route.body.__name__}"}
                    }
                },
            }
        elif route.body is not None:
            ref = {"$ref": f"#/components/schemas/{route.body.__name__}"}
            version = {
                "type": "integer",
                "minimum": 0,
                "description": "The version read with GET (0: only if it does not exist "
                "yet); 409 if the item changed since. Or send If-Match.",
            }
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"allOf": [ref, {"properties": {"version": version}}]}
                    }
                },
            }
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dccgate admin API",
            "version": "1",
            "description": "Configuration, tokens, quarantine decisions and audit. "
            "Every change is written to dcc.control and applied by every worker within "
            "a second, and recorded on dcc.audit.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _answer(route: Any) -> dict[str, Any]:
    if route.answer is None:
        return {"type": "object"}
    ref = {"$ref": f"#/components/schemas/{route.answer.__name__}"}
    if route.answer in _UNVERSIONED:
        return ref
    # A configuration item in force: its fields, or none for a default that is "off"
    # (traffic management, a User's allocation); with its version and source.
    return {
        "anyOf": [ref, {"type": "object", "properties": {"source": {"const": "default"}}}],
        "properties": {
            "version": {"type": "integer", "minimum": 0, "description": "0: never set"},
            "source": {"enum": ["default", "file", "api"]},
            "note": {"type": "string", "description": "what a default means"},
        },
        "required": ["version", "source"],
    }


# Answers that are not configuration items, so carry no `version`.
_UNVERSIONED = frozenset({Explanation, WhoAmI})
