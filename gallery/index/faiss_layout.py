"""How the gallery lays out its FAISS indexes: an id map around indexes that need one, and `IVF...,RFlat`
(an inverted file whose ids are the rows of an id-mapped Flat of the full vectors, which rescores its
candidates exactly)."""

import faiss
import numpy as np


def with_ids(index):
    """IVF indexes keep the ids themselves: IndexIDMap's remove_ids assumes that removal shifts the later vectors
    down (as in Flat), so in an IVF it would misname every vector added after a removed one. Others get an id map."""
    if isinstance(index, faiss.IndexIDMap) or faiss.try_extract_index_ivf(index) is not None:
        return index
    return faiss.IndexIDMap(index)


def refined_index(factory: str, dim: int):
    """`IVF...,RFlat` as this module keeps it: an IndexRefine over the IVF and, for the exact scores, the full
    vectors in an id-mapped Flat (the ids, in-place removal as in the exact index); None for any other factory.
    The IVF's ids are the rows of the full vectors, so a candidate is rescored without any id lookup and adding
    or removing one vector costs no re-sorting (see `VectorIndex._remove_refined`)."""
    base, _, last = factory.replace(" ", "").rpartition(",")
    if last != "RFlat" or not base.startswith("IVF"):
        return None
    ivf = faiss.index_factory(dim, base, faiss.METRIC_INNER_PRODUCT)
    store = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
    store.own_fields = True
    store.index.this.disown()
    index = faiss.IndexRefine(ivf, store)
    index.own_fields = True
    ivf.this.disown()
    store.this.disown()
    return index


def parts(index):
    """(the IVF that answers, the id-mapped full vectors) of a refined index; (index, None) otherwise."""
    if isinstance(index, faiss.IndexRefine):
        return faiss.downcast_index(index.base_index), faiss.downcast_index(index.refine_index)
    return index, None


def stored_ids(index) -> np.ndarray:
    """The ids `index` holds: its id map (a refined index: its full vectors'), or an IVF's inverted lists."""
    if isinstance(index, faiss.IndexRefine):
        return stored_ids(parts(index)[1])
    if isinstance(index, faiss.IndexIDMap):  # a no-copy view: the exact index's in-place removal writes through it
        return faiss.rev_swig_ptr(index.id_map.data(), index.ntotal) if index.ntotal else np.zeros(0, np.int64)
    lists = faiss.extract_index_ivf(index).invlists
    return np.concatenate([np.zeros(0, np.int64)] + [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                                                     for i in range(lists.nlist) if lists.list_size(i)])
