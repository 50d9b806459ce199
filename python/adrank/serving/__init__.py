"""The request path around the model: catalog join, scoring, pricing, orchestration."""
