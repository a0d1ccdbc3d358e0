"""Training a small FramePack model on a procedural world (see docs/toyworld.md)."""
