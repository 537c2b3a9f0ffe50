"""faceid: the core library of the face-identification pipeline.

It holds the shared vocabulary every other package builds on: configuration, data (datasets,
pair protocols, the synthetic face generator), detection and alignment, backbones and losses.
The stages install beneath it as `faceid.training`, `faceid.gallery`, `faceid.export` and
`faceid.evaluation` (the repository's top-level folders of those names); the core imports none of them.
"""

__version__ = "0.1.0"
