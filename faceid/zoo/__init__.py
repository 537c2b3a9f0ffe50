"""Pretrained models from other projects, converted to faceid backbones (see docs/pretrained.md)."""
