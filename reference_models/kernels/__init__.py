"""Fused kernels for the looped transformer's hot path (Triton + PyTorch reference)."""

from benchgen.reference_models.kernels.junction import junction, junction_reference

__all__ = ["junction", "junction_reference"]
