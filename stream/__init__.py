"""Live sessions and media: WebSocket protocol, WebRTC, MP4 export over a `SectionBackend` (see docs/stream.md)."""
