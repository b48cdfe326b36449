"""The OpenAI Responses API (DESIGN §12): its contract, stream format and serving."""
