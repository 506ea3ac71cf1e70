"""The edges: settings, FastAPI app, CLI."""
