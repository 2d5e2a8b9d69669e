"""scidiff."""
