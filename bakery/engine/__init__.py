"""The embedded engine: scheduler, content store, snapshots, sandbox."""
