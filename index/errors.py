"""Domain errors, raised in the core and translated at the edges (HTTP status, CLI exit code)."""

from __future__ import annotations


class MedciteError(Exception):
    """Base class: the message is written for the person who has to act on it."""


class IndexNotFound(MedciteError):
    pass


class IndexMismatch(MedciteError):
    """The index on disk was built with other settings (model, chunker, format)."""


class IndexCorrupt(MedciteError):
    pass


class IndexWriteError(MedciteError):
    """A new index version could not be written (disk full, quota, I/O error); its partial
    files are already removed and the live version is untouched."""


class NothingToIndex(MedciteError):
    pass


class ModelUnavailable(MedciteError):
    pass


class InvalidQuery(MedciteError):
    pass


class EmptyQuery(InvalidQuery):
    pass


class QueryTooLong(InvalidQuery):
    pass


class ControlCharacters(InvalidQuery):
    """The query holds control characters (other than tab, newline, carriage return)."""


class LoneSurrogate(InvalidQuery):
    """The query holds a lone UTF-16 surrogate (U+D800..U+DFFF): not a character, and no
    tokenizer can encode it."""


class DocumentNotFound(MedciteError):
    pass


class BackendUnavailable(MedciteError):
    """The index backend (a Milvus server) could not be reached or refused an operation."""


class RelevanceModelError(MedciteError):
    """The relevance model file (MEDCITE_RELEVANCE_MODEL) is missing or unusable."""
