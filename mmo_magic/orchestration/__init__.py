"""The Orchestrator and what it runs: the call engine, reliability, budget, races and judges,
pipelines and the session's default orchestrator. Imports the core, providers, routing, storage."""
