"""faceid: the core library of the face-identification pipeline.

It holds the shared vocabulary every other package builds on: configuration, data (datasets,
pair protocols, the synthetic face generator), detection and alignment, backbones and losses.
The stages install beneath it as `faceid.training`, `faceid.gallery`, `faceid.export` and
`faceid.evaluation` (the repository's top-level folders of those names); the core imports none of them.
"""

__version__ = "0.1.0"

__all__ = ["Face", "FaceAnalysis", "__version__", "compare", "find", "represent"]


def __getattr__(name: str):
    """The Python API (`faceid.compare`, `represent`, `find`, `FaceAnalysis`), imported on first use, so that
    `import faceid` stays light and the core imports no stage."""
    if name in ("compare", "represent", "find"):
        from faceid import api

        return getattr(api, name)
    if name in ("FaceAnalysis", "Face"):
        from faceid import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'faceid' has no attribute {name!r}")
