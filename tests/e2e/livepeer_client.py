"""Drive Livepeer's own Python SDK (PyPI `livepeer` 0.3.0, unmodified) and report as JSON.

It runs in a virtualenv of its own (tests/e2e/test_sdks.py makes it): the SDK pins pydantic
2.9, httpx 0.27 and python-dateutil 2.8.2, older than what the rest of the test install
holds. Reads `{"server_url", "api_key", "calls": [{"op", "args"}]}` on stdin and prints one
result per call: what the SDK parsed (its models dumped by alias), or the SDK's exception
with the `errors` it carries. Only the standard library and the SDK: no packager imports.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from livepeer import Livepeer
from livepeer.models import components, errors
from livepeer.utils import unmarshal_json


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _call(lp: Livepeer, op: str, args: dict[str, Any]) -> dict[str, Any]:
    if op == "create_clip":
        created = lp.stream.create_clip(request=components.ClipPayload(**args))
        assert created.data is not None
        return {"status": created.http_meta.response.status_code, "data": _dump(created.data)}
    if op == "get_clips":
        listed = lp.stream.get_clips(id=args["id"])
        assert listed.data is not None
        return {
            "status": listed.http_meta.response.status_code,
            "data": [_dump(asset) for asset in listed.data],
        }
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    order = json.load(sys.stdin)
    lp = Livepeer(api_key=order["api_key"], server_url=order["server_url"])
    results: list[dict[str, Any]] = []
    for call in order["calls"]:
        try:
            results.append({"ok": True, **_call(lp, call["op"], call["args"])})
        except errors.SDKError as exc:  # what the SDK raises for a 4xx/5xx
            parsed = unmarshal_json(exc.body, errors.ErrorData)
            results.append(
                {
                    "ok": False,
                    "exception": type(exc).__name__,
                    "status": exc.status_code,
                    "errors": parsed.errors,
                }
            )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
