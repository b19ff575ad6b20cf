"""What is kept on disk: the run log and the response cache (SQLite). Imports only the core."""
