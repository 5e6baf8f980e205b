"""Progress display and report templates."""
