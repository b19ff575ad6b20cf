"""The least a Python gateway on mmo_magic's HTTP stack can do: a reference for ``gateway.py``.

    python benchmarks/passthrough.py UPSTREAM_URL PORT   (UPSTREAM_URL ends in /v1)

A bare ASGI app under uvicorn (httptools and uvloop, as mmo-serve runs) that sends
each request's body unread to the upstream on one shared aiohttp session (what is
under the SDKs' ``DefaultAioHttpClient``, called directly as mmo_magic's clients call
it) and relays the answer's bytes as they come. No keys, no parsing, no validation, no
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
    import aiohttp

    session: list[aiohttp.ClientSession] = []  # made on the server's loop, at startup
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    session.append(aiohttp.ClientSession())
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await session[0].close()
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
        url = upstream + scope["path"].removeprefix("/v1")
        async with session[0].post(url, data=body, headers=headers) as answer:
            kind = answer.headers.get("content-type", "application/json").encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status,
                    "headers": [(b"content-type", kind)],
                }
            )
            async for chunk in answer.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def main() -> None:
    import uvicorn

    upstream, port = sys.argv[1], int(sys.argv[2])
    app = make_app(upstream, os.environ[SIM_KEY_ENV])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
