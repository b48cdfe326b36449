"""The OpenAI Chat Completions API: `/v1/chat/completions` and `/v1/models`."""
