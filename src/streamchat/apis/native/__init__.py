"""The native API of the seed: `POST /api/chat` and its plain-text event stream."""
