"""Task generators: one module per task, one config dataclass each."""
