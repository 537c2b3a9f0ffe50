"""The backbone registry (kept apart so member modules can import it without cycles)."""

from faceid.registry import Registry

BACKBONES = Registry("backbone")
