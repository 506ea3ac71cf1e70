"""medcite: cited answers to health questions from a corpus of medical articles.

The stages live in the repository's top-level folders and are installed under this name:
``medcite.ingest`` (``ingest/``), ``medcite.index`` (``index/``) and ``medcite.service``
(``service/``), so that ``pip install medcite`` puts no ``index`` or ``service`` package
next to a user's own modules. In a checkout, ``medcite/ingest`` and the others are symbolic
links to those folders.
"""
