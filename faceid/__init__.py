"""faceid: the core library of the face-identification pipeline.

It holds the shared vocabulary every other package builds on: configuration, data (datasets,
pair protocols, the synthetic face generator), detection and alignment, backbones and losses.
It imports none of `training`, `gallery`, `export` or `evaluation`.
"""

__version__ = "0.1.0"
