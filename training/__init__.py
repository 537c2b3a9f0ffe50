"""faceid.training: the training loop, samplers and miners, augmentation, and distributed training.

Imports `faceid` (backbones, losses, data) and `faceid.evaluation` (validation during training).
"""
