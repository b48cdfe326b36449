"""The AI SDK's UI message stream (`useChat`): `/api/ui/chat`, resumable and stoppable."""
