"""CLI command groups that `emoflow.cli` registers."""
