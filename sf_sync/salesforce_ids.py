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


def normalise(record_id: str) -> str | None:
    """A 15- or 18-character Id in its canonical 18-character form, or None if malformed.

    An 18-character Id is case-insensitive: its suffix says which of the first 15 characters
    are upper case, so the case is restored from it (as Salesforce accepts such Ids).
    """
    if not (record_id.isascii() and record_id.isalnum()) or len(record_id) not in (15, 18):
        return None
    if len(record_id) == 15:
        return to_18(record_id)
    suffix = record_id[15:].upper()
    if any(c not in _CHECKSUM_ALPHABET for c in suffix):
        return None
    chars = []
    for chunk, code in enumerate(suffix):
        bits = _CHECKSUM_ALPHABET.index(code)
        for i, ch in enumerate(record_id[chunk * 5 : chunk * 5 + 5]):
            if bits & (1 << i):
                if not ch.isalpha():
                    return None
                chars.append(ch.upper())
            else:
                chars.append(ch.lower())
    return "".join(chars) + suffix
