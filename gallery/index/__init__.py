"""The gallery's vector index: backends (FAISS, Milvus) behind one interface, kept at the store's generation.

Importing this package registers every backend (`gallery.index.backend`).
"""

from faceid.gallery.index import faiss_index, milvus_index  # noqa: F401  (their registrations)
