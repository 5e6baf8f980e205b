"""bakery: a declarative, bake-style build tool for container images."""

__all__ = ["__version__"]

__version__ = "0.1.0"
