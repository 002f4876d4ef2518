"""Salesforce record Ids: 15 case-sensitive characters plus a 3-character case checksum."""

from __future__ import annotations

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def checksum(id15: str) -> str:
    """The 3 suffix characters: one per 5-character chunk, bit i set where char i is A-Z."""
    if len(id15) != 15:
        raise ValueError(f"expected 15 characters, got {id15!r}")
    out = []
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        out.append(_CHECKSUM_ALPHABET[bits])
    return "".join(out)


def to_18(id15: str) -> str:
    return id15 + checksum(id15)


def make_id(key_prefix: str, number: int, pod: str = "5f0") -> str:
    """An 18-character Id: 3-char key prefix, 3-char pod/instance, 9 base-62 digits."""
    if len(key_prefix) != 3 or len(pod) != 3:
        raise ValueError("key prefix and pod are 3 characters each")
    digits = []
    for _ in range(9):
        number, rem = divmod(number, 62)
        digits.append(_BASE62[rem])
    if number:
        raise ValueError("number too large for 9 base-62 digits")
    return to_18(key_prefix + pod + "".join(reversed(digits)))


def is_valid_18(record_id: str) -> bool:
    return (
        len(record_id) == 18
        and record_id.isalnum()
        and record_id.isascii()
        and checksum(record_id[:15]) == record_id[15:]
    )
