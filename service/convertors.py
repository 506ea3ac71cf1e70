"""URL convertors: ``{name:anypath}`` is Starlette's ``path`` that also matches a newline.

Document ids come from file names, and a file name may hold a newline: with ``path`` (``.*``,
no newline) such a document is cited but ``GET /documents/{id}`` is a 404. Importing this
module registers the convertor (Starlette keeps convertors in one process-wide table).
"""

from __future__ import annotations

from starlette.convertors import PathConvertor, register_url_convertor


class AnyPathConvertor(PathConvertor):
    regex = "(?s:.*)"


register_url_convertor("anypath", AnyPathConvertor())
