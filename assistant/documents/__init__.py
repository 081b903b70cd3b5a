"""The user's documents: reading files, sentence-aware chunks, ingestion and hybrid search.

:mod:`.reader` turns .txt/.md/.html/.pdf into located sections, :mod:`.chunking` cuts them into
sentence-aligned chunks, :mod:`.ingest` embeds and stores them, and :mod:`.search` answers
queries with BM25 (FTS5) and vectors fused by reciprocal rank.
"""
