"""Policy model, validation and compilation into immutable snapshots."""
