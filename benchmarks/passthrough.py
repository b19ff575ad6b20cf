"""The least a Python gateway on the SDK's HTTP stack can do: a reference for ``gateway.py``.

    python benchmarks/passthrough.py UPSTREAM_URL PORT   (UPSTREAM_URL ends in /v1)

A bare ASGI app under uvicorn (httptools and uvloop, as mmo-serve runs) that sends
each request's body unread to the upstream with the openai SDK's own HTTP client
(``openai.DefaultAioHttpClient``, one shared pool: the one mmo_magic's clients use)
and relays the answer's bytes as they come. No keys, no parsing, no validation, no
run log, no metrics: what a gateway costs before it does anything of its own,
measured beside mmo-serve in ``gateway.py``'s c=1 rounds. Not a product: it never
checks what it forwards.
"""

from __future__ import annotations

import os
import sys
from typing import Any

SIM_KEY_ENV = "MMO_BENCH_SIM_KEY"


def make_app(upstream: str, key: str) -> Any:
    import openai

    client: list[Any] = []  # made on the server's loop, at startup
    auth = f"Bearer {key}"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    client.append(openai.DefaultAioHttpClient(base_url=upstream, timeout=60))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await client[0].aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/health":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = client[0].build_request(
            "POST",
            scope["path"].removeprefix("/v1"),
            content=body,
            headers={"content-type": "application/json", "authorization": auth},
        )
        answer = await client[0].send(request, stream=True)
        kind = answer.headers.get("content-type", "application/json").encode()
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [(b"content-type", kind)],
            }
        )
        try:
            async for chunk in answer.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await answer.aclose()
        await send({"type": "http.response.body", "body": b""})

    return app


def main() -> None:
    import uvicorn

    upstream, port = sys.argv[1], int(sys.argv[2])
    app = make_app(upstream, os.environ[SIM_KEY_ENV])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
