"""Field values: from API input (JSON or CSV text) to storage, and from storage to JSON.

Storage follows one convention shared with the SOQL compiler: text for strings, Ids, dates
(``YYYY-MM-DD``) and datetimes (``YYYY-MM-DDTHH:MM:SS.sss+0000``, UTC, so text order is time
order); 0/1 for booleans; integers and floats for numbers.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sf_sync.devorg.errors import ApiError
from sf_sync.devorg.metadata import FieldSpec, ObjectSpec, Schema
from sf_sync.salesforce_ids import normalise as normalise_id

TEXT_TYPES = {"string", "textarea", "picklist", "phone", "url", "email"}
NUMBER_TYPES = {"double", "currency", "percent"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$"
)


def format_datetime(moment: datetime) -> str:
    """Salesforce's REST form: ``2024-04-26T23:06:35.000+0000`` (always UTC here)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    """ISO-8601 as Salesforce accepts it: ``Z``, ``+hh:mm`` or ``+hhmm``; naive means UTC."""
    m = _DATETIME.match(text.strip())
    if not m:
        raise ValueError(text)
    y, mo, d, h, mi, s, frac, zone = m.groups()
    micro = int((frac or ".0")[1:].ljust(6, "0")[:6])
    moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=UTC)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        moment = moment - timedelta(minutes=offset)
    return moment


def datetime_to_epoch_ms(stored: str) -> int:
    return int(parse_datetime(stored).timestamp() * 1000)


def _deserialize_error(spec: FieldSpec, value: Any, kind: str) -> ApiError:
    shown = value if isinstance(value, str) else repr(value)
    return ApiError(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from VALUE_STRING value {shown} "
        f"or request may be missing a required field",
        [spec.name],
    )


def to_storage(obj: ObjectSpec, spec: FieldSpec, value: Any, schema: Schema) -> Any:
    """Checks one input value against its field and converts it to the stored form.

    Strings are accepted for every type (the Bulk API sends CSV text), as Salesforce does.
    """
    if value is None or (isinstance(value, str) and value == "" and spec.type not in TEXT_TYPES):
        return None
    typ = spec.type
    if typ in TEXT_TYPES:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _deserialize_error(spec, value, "string")
        text = str(value)
        if text == "":
            return None
        if spec.length and len(text) > spec.length:
            raise ApiError(
                "STRING_TOO_LONG",
                f"{spec.label}: data value too large: {text[:40]} (max length={spec.length})",
                [spec.name],
            )
        if typ == "email" and not _EMAIL.match(text):
            raise ApiError(
                "INVALID_EMAIL_ADDRESS", f"{spec.label}: invalid email address: {text}", [spec.name]
            )
        return text
    if typ == "boolean":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return int(value.lower() == "true")
        raise _deserialize_error(spec, value, "boolean")
    if typ == "int":
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        except (TypeError, ValueError):
            raise _deserialize_error(spec, value, "int") from None
    if typ in NUMBER_TYPES:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise _deserialize_error(spec, value, "double") from None
    if typ == "date":
        text = str(value)
        try:
            if len(text) != 10:
                raise ValueError(text)
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise _deserialize_error(spec, value, "date") from None
    if typ == "datetime":
        try:
            return format_datetime(parse_datetime(str(value)))
        except ValueError:
            raise _deserialize_error(spec, value, "datetime") from None
    if typ in ("reference", "id"):
        return _reference(spec, str(value), schema)
    raise ApiError("INVALID_FIELD", f"field {spec.name} cannot be written", [spec.name])


def _reference(spec: FieldSpec, value: str, schema: Schema) -> str:
    """A lookup must hold a well-formed Id of one of the referenced objects' key prefixes."""
    record_id = normalise_id(value)
    targets = [schema.get(t) for t in spec.reference_to]
    prefixes = {t.key_prefix for t in targets if t} | (
        {"005"} if "User" in spec.reference_to else set()
    )
    if record_id is None or (prefixes and record_id[:3] not in prefixes):
        raise ApiError(
            "MALFORMED_ID", f"{spec.label}: id value of incorrect type: {value}", [spec.name]
        )
    return record_id


def to_json(spec: FieldSpec, stored: Any) -> Any:
    """The REST JSON value of a stored value."""
    if stored is None:
        return None
    if spec.type == "boolean":
        return bool(stored)
    if spec.type == "int":
        return int(stored)
    if spec.type in NUMBER_TYPES:
        return float(stored)
    return stored


def address_json(obj: ObjectSpec, compound: str, stored: dict[str, Any]) -> dict[str, Any] | None:
    """REST's address object: lower-camel component keys, or null when every part is empty."""
    parts = obj.compounds[compound]
    prefix = compound[: -len("Address")]
    out = {}
    for name in parts:
        part = name[len(prefix) :]
        out[part[0].lower() + part[1:]] = to_json(obj.field(name), stored.get(name))  # type: ignore[arg-type]
    return out if any(v is not None for v in out.values()) else None


def now_utc() -> datetime:
    return datetime.now(UTC)
