"""benchgen core: on-disk dataset format, schema, vocabulary, seeding and the task registry."""

__version__ = "0.1.0"
