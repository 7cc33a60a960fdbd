"""The HTTP side: FastAPI app with the JSON API, feeds, webhooks and web pages."""
