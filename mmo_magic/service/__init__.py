"""The HTTP service (mmo-serve): the only layer that imports fastapi, starlette or uvicorn."""
