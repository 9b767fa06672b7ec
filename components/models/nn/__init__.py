"""Layers shared by the model families: masked linear layers (MADE, PixelCNN)."""

from components.models.nn.masked import MaskedLinear, degree_mask

__all__ = ["MaskedLinear", "degree_mask"]
