"""The ranking service: an HTTP JSON API (FastAPI on uvicorn) over :class:`adrank.Ranker`."""
