"""The registries of losses and of auxiliary terms (kept apart so members can import them)."""

from faceid.registry import Registry

LOSSES = Registry("loss")
AUX_TERMS = Registry("auxiliary term")
