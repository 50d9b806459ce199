"""The request path around the model: catalog join, features, scoring, selection, pricing."""
