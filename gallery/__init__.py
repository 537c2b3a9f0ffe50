"""faceid.gallery: enrolled identities: the SQLite store, the vector index (FAISS or Milvus), verification,
identification and the HTTP service.

Imports `faceid`, `faceid.export` (the embedder) and `faceid.evaluation` (threshold calibration).
"""
