"""The build graph: operations with content cache keys, merged across targets."""
