"""gallery: enrolled identities: the FAISS index, the metadata store, verification and identification.

Imports `faceid`, `export` (the embedder) and `evaluation` (threshold calibration).
"""
