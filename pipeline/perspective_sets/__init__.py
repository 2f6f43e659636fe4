"""Built-in perspective sets (YAML package data); load them with ``pipeline.perspectives``."""
