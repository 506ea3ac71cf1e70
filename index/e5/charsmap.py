"""SentencePiece's precompiled_charsmap: the normalisation table as a darts-clone trie."""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field


@dataclass
class _TrieNode:
    children: dict[int, _TrieNode] = field(default_factory=dict)
    value: int | None = None


def _precompiled_charsmap(table: dict[int, str]) -> bytes:
    """SentencePiece's precompiled_charsmap for a codepoint -> string table.

    Layout: u32 size of the trie in bytes, the trie as a darts-clone double array of u32 units,
    then the replacement strings, each NUL-terminated. The trie maps a key's UTF-8 bytes to the
    offset of its replacement. A unit holds its label in bits 0-7, a has-leaf flag in bit 8 and
    the XOR offset to its children in bits 10-30; a leaf unit is the value with bit 31 set,
    stored at the child slot for label 0.
    """
    strings = bytearray(b"\0")  # offset 0: the empty string (deletion)
    where: dict[str, int] = {"": 0}
    root = _TrieNode()
    for cp in sorted(table):
        if cp == 0:  # NUL ends the lookup; it cannot be a key
            continue
        out = table[cp]
        if out not in where:
            where[out] = len(strings)
            strings += out.encode("utf-8") + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.children.setdefault(byte, _TrieNode())
        node.value = where[out]

    units = [0] * 512
    used = bytearray(512)
    used[0] = 1
    used_bases: set[int] = set()
    first_free = 1
    queue: deque[tuple[_TrieNode, int]] = deque([(root, 0)])
    while queue:
        node, pos = queue.popleft()
        labels = ([0] if node.value is not None else []) + sorted(node.children)
        while used[first_free]:
            first_free += 1
        q = first_free
        while True:
            base = q ^ labels[0]
            if len(used) <= (base | 0xFF):
                used.extend(bytearray((base | 0xFF) + 1 - len(used)))
                units.extend([0] * (len(used) - len(units)))
            if base not in used_bases and not any(used[base ^ c] for c in labels):
                break
            q += 1
            while q < len(used) and used[q]:
                q += 1
            if q >= len(used):
                used.extend(bytearray(256))
                units.extend([0] * 256)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("normalisation trie too large for the double array")
        used_bases.add(base)
        units[pos] |= offset << 10
        if node.value is not None:
            units[pos] |= 1 << 8
            units[base] = node.value | (1 << 31)
            used[base] = 1
        for label, child in sorted(node.children.items()):
            units[base ^ label] = label
            used[base ^ label] = 1
            queue.append((child, base ^ label))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)
