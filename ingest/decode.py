"""Bytes to text: detect the encoding, never guess wrong silently.

Order: a byte-order mark; strict UTF-8; strict GB18030 when the result reads as common Chinese;
charset-normalizer's best guess only when no close rival decodes the bytes differently.
Anything else is an :class:`UndecodableError` carrying the reason.
"""

from __future__ import annotations

import codecs
import logging

from medcite.ingest.language import HAN_CHAR

LOG = logging.getLogger(__name__)

# Share of Han characters that must be GB2312 level-1 (the 3,755 most common) for bytes that
# decode as GB18030 to count as Chinese text: ~99% in real prose, ~16% in random double bytes.
_GB_COMMON_SHARE = 0.6
_NORMALIZER_MAX_CHAOS = 0.1  # charset-normalizer "mess" ratio of an acceptable guess
_RIVAL_MARGIN = 0.1  # guesses this close to the best must decode to the same text
_CONTROL_SHARE = 0.05


class UndecodableError(ValueError):
    """The bytes are binary or in no encoding we can identify with confidence."""


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Return ``(text, encoding)``; a leading byte-order mark is not part of ``text``."""
    if data.startswith(codecs.BOM_UTF8):
        return _strict(data[len(codecs.BOM_UTF8) :], "utf-8"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(data, "utf-16"), "utf-16"
    if b"\x00" in data:
        raise UndecodableError("binary file (contains NUL bytes)")
    for encoding in ("utf-8", "gb18030"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "gb18030" and not _reads_as_chinese(text):
            LOG.debug("bytes decode as GB18030 but do not read as Chinese")
            continue
        _refuse_binary(text)
        return text, encoding
    text, encoding = _normalizer_guess(data)
    _refuse_binary(text)
    return text, encoding


def _strict(data: bytes, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UndecodableError(
            f"has a {encoding} byte-order mark but is not {encoding}: {exc}"
        ) from None
    _refuse_binary(text)
    return text


def _reads_as_chinese(text: str) -> bool:
    han = HAN_CHAR.findall(text)
    if not han:
        return False
    common = sum(1 for ch in han if _gb2312_level1(ch))
    return common / len(han) >= _GB_COMMON_SHARE


def _gb2312_level1(ch: str) -> bool:
    try:
        encoded = ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(encoded) == 2 and 0xB0 <= encoded[0] <= 0xD7


def _normalizer_guess(data: bytes) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        raise UndecodableError("not UTF-8 or GB18030, and no other encoding fits the bytes")
    best = min(matches, key=lambda m: m.chaos)
    text = str(best)
    if best.chaos > _NORMALIZER_MAX_CHAOS:
        raise UndecodableError(
            f"not UTF-8 or GB18030; best guess {best.encoding} is too garbled "
            f"(chaos {best.chaos:.2f})"
        )
    rivals = sorted(
        {
            m.encoding
            for m in matches
            if m is not best and m.chaos <= best.chaos + _RIVAL_MARGIN and str(m) != text
        }
    )
    if rivals:
        raise UndecodableError(
            f"not UTF-8 or GB18030; encoding is ambiguous ({best.encoding} or "
            f"{', '.join(rivals[:3])} read it differently)"
        )
    return text, best.encoding


def _refuse_binary(text: str) -> None:
    if not text:
        return
    controls = sum(1 for ch in text if ch < " " and ch not in "\t\n\r\f\v")
    if controls / len(text) > _CONTROL_SHARE:
        raise UndecodableError(f"binary file ({controls} control characters)")
