"""Embedding, FAISS and BM25 indexes, and hybrid search."""
