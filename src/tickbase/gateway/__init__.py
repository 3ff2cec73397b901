"""The gateway: HTTP API, WebSocket and dashboard sessions, and who may use them."""
