"""The core every wire API shares: start, follow and stop a stream; turns; saving answers."""
