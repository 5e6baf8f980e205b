"""Bake files (HCL, JSON, TOML, compose) → resolved targets."""
