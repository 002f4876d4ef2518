"""Object and field metadata: what `describe` reports, what validation and SOQL check against.

The standard objects carry the fields most integrations touch (a subset of the real ones, with
their real names, types, lengths and flags); custom objects and fields come from configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

# describe `type` values the stand-in knows (Salesforce's SOAP type names).
FIELD_TYPES = (
    "id", "string", "textarea", "boolean", "int", "double", "currency", "percent", "date",
    "datetime", "picklist", "reference", "phone", "url", "email", "address",
)  # fmt: skip

ADDRESS_PARTS = (
    ("Street", "textarea", 255),
    ("City", "string", 40),
    ("State", "string", 80),
    ("PostalCode", "string", 20),
    ("Country", "string", 80),
    ("Latitude", "double", 0),
    ("Longitude", "double", 0),
    ("GeocodeAccuracy", "picklist", 40),
)
GEOCODE_ACCURACY = ("Address", "NearAddress", "Block", "Street", "ExtendedZip", "Zip", "City")


@dataclass(frozen=True)
class FieldSpec:
    """One field as `describe` reports it."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    unique: bool = False
    external_id: bool = False
    custom: bool = False
    picklist_values: tuple[str, ...] = ()
    reference_to: tuple[str, ...] = ()
    compound_field_name: str | None = None
    default: Any = None

    @property
    def required(self) -> bool:
        """Salesforce's REQUIRED_FIELD_MISSING rule: createable, not nillable, no default."""
        return self.createable and not self.nillable and not self.defaulted_on_create


@dataclass(frozen=True)
class ObjectSpec:
    """One sObject: its key prefix (first 3 Id characters) and its fields in describe order."""

    name: str
    key_prefix: str
    label: str
    fields: tuple[FieldSpec, ...]
    custom: bool = False
    # compound field name -> flat component fields (BillingAddress -> BillingStreet, ...)
    compounds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    _by_lower: Mapping[str, FieldSpec] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_lower", {f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> FieldSpec | None:
        """Field lookup is case-insensitive, as in SOQL and the REST API."""
        return self._by_lower.get(name.lower())

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def stored_fields(self) -> list[FieldSpec]:
        """Fields with a column of their own. Addresses are views over their components;
        Contact's Name is stored (derived from its parts on write) because SOQL filters on it."""
        return [f for f in self.fields if f.type != "address"]

    def is_compound(self, name: str) -> bool:
        return name in self.compounds

    def external_id_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.external_id]


# ---------------------------------------------------------------------------------------------
# Standard objects


def _audit_fields() -> list[FieldSpec]:
    ro = {"createable": False, "updateable": False, "nillable": False, "defaulted_on_create": True}
    return [
        FieldSpec("CreatedDate", "datetime", "Created Date", **ro),
        FieldSpec(
            "CreatedById", "reference", "Created By ID", length=18, reference_to=("User",), **ro
        ),
        FieldSpec("LastModifiedDate", "datetime", "Last Modified Date", **ro),
        FieldSpec(
            "LastModifiedById", "reference", "Last Modified By ID", length=18,
            reference_to=("User",), **ro,
        ),
        FieldSpec("SystemModstamp", "datetime", "System Modstamp", **ro),
    ]  # fmt: skip


def _id_fields() -> list[FieldSpec]:
    return [
        FieldSpec(
            "Id", "id", "Record ID", length=18, nillable=False, createable=False,
            updateable=False, defaulted_on_create=True,
        ),
        FieldSpec(
            "IsDeleted", "boolean", "Deleted", nillable=False, createable=False, updateable=False,
            defaulted_on_create=True, default=False,
        ),
    ]  # fmt: skip


def _address(prefix: str, label: str) -> list[FieldSpec]:
    compound = f"{prefix}Address"
    parts = []
    for part, typ, length in ADDRESS_PARTS:
        extra: dict[str, Any] = {"length": length} if length else {"precision": 18, "scale": 15}
        if part == "GeocodeAccuracy":
            extra["picklist_values"] = GEOCODE_ACCURACY
        parts.append(
            FieldSpec(
                f"{prefix}{part}", typ, f"{label} {part}", compound_field_name=compound, **extra
            )
        )
    parts.append(
        FieldSpec(compound, "address", f"{label} Address", createable=False, updateable=False)
    )
    return parts


def _owner() -> FieldSpec:
    return FieldSpec(
        "OwnerId", "reference", "Owner ID", length=18, nillable=False, defaulted_on_create=True,
        reference_to=("User",),
    )  # fmt: skip


def account_spec() -> ObjectSpec:
    fields = [
        *_id_fields(),
        FieldSpec("Name", "string", "Account Name", length=255, nillable=False),
        FieldSpec(
            "Type", "picklist", "Account Type", length=255,
            picklist_values=("Prospect", "Customer - Direct", "Customer - Channel",
                             "Channel Partner / Reseller", "Installation Partner",
                             "Technology Partner", "Other"),
        ),
        FieldSpec(
            "ParentId", "reference", "Parent Account ID", length=18, reference_to=("Account",)
        ),
        *_address("Billing", "Billing"),
        *_address("Shipping", "Shipping"),
        FieldSpec("Phone", "phone", "Account Phone", length=40),
        FieldSpec("Fax", "phone", "Account Fax", length=40),
        FieldSpec("AccountNumber", "string", "Account Number", length=40),
        FieldSpec("Website", "url", "Website", length=255),
        FieldSpec("Sic", "string", "SIC Code", length=20),
        FieldSpec(
            "Industry", "picklist", "Industry", length=255,
            picklist_values=("Agriculture", "Banking", "Chemicals", "Communications",
                             "Construction", "Consulting", "Education", "Electronics", "Energy",
                             "Engineering", "Finance", "Healthcare", "Insurance", "Manufacturing",
                             "Media", "Retail", "Technology", "Transportation", "Utilities",
                             "Other"),
        ),
        FieldSpec("AnnualRevenue", "currency", "Annual Revenue", precision=18, scale=0),
        FieldSpec("NumberOfEmployees", "int", "Employees", precision=8),
        FieldSpec(
            "Ownership", "picklist", "Ownership", length=255,
            picklist_values=("Public", "Private", "Subsidiary", "Other"),
        ),
        FieldSpec("TickerSymbol", "string", "Ticker Symbol", length=20),
        FieldSpec("Description", "textarea", "Account Description", length=32000),
        FieldSpec(
            "Rating", "picklist", "Account Rating", length=255,
            picklist_values=("Hot", "Warm", "Cold"),
        ),
        FieldSpec("Site", "string", "Account Site", length=80),
        _owner(),
        *_audit_fields(),
        FieldSpec(
            "LastActivityDate", "date", "Last Activity", createable=False, updateable=False
        ),
    ]  # fmt: skip
    return ObjectSpec(
        "Account", "001", "Account", tuple(fields),
        compounds=_compounds(fields),
    )  # fmt: skip


def contact_spec() -> ObjectSpec:
    fields = [
        *_id_fields(),
        FieldSpec("AccountId", "reference", "Account ID", length=18, reference_to=("Account",)),
        FieldSpec("LastName", "string", "Last Name", length=80, nillable=False,
                  compound_field_name="Name"),
        FieldSpec("FirstName", "string", "First Name", length=40, compound_field_name="Name"),
        FieldSpec(
            "Salutation", "picklist", "Salutation", length=40, compound_field_name="Name",
            picklist_values=("Mr.", "Ms.", "Mrs.", "Dr.", "Prof."),
        ),
        FieldSpec("Name", "string", "Full Name", length=121, createable=False, updateable=False,
                  nillable=False, defaulted_on_create=True),
        *_address("Mailing", "Mailing"),
        *_address("Other", "Other"),
        FieldSpec("Phone", "phone", "Business Phone", length=40),
        FieldSpec("MobilePhone", "phone", "Mobile Phone", length=40),
        FieldSpec("Email", "email", "Email", length=80),
        FieldSpec("Title", "string", "Title", length=128),
        FieldSpec("Department", "string", "Department", length=80),
        FieldSpec("Birthdate", "date", "Birthdate"),
        FieldSpec("Description", "textarea", "Contact Description", length=32000),
        FieldSpec("HasOptedOutOfEmail", "boolean", "Email Opt Out", nillable=False,
                  defaulted_on_create=True, default=False),
        _owner(),
        *_audit_fields(),
        FieldSpec(
            "LastActivityDate", "date", "Last Activity", createable=False, updateable=False
        ),
    ]  # fmt: skip
    return ObjectSpec("Contact", "003", "Contact", tuple(fields), compounds=_compounds(fields))


def _compounds(fields: Iterable[FieldSpec]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for f in fields:
        if f.compound_field_name:
            out.setdefault(f.compound_field_name, []).append(f.name)
    return {k: tuple(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# Custom objects and fields from configuration


class MetadataError(ValueError):
    """A custom object or field declaration in the configuration is invalid."""


_FIELD_OPTIONS = {
    "length", "precision", "scale", "required", "unique", "external_id", "label",
    "picklist_values", "reference_to", "default", "type",
}  # fmt: skip


def custom_field(name: str, raw: Mapping[str, Any]) -> FieldSpec:
    """A field from configuration, e.g. ``{type: string, length: 40, external_id: true}``."""
    if not name.endswith("__c"):
        raise MetadataError(f"custom field {name!r} must end in __c")
    unknown = set(raw) - _FIELD_OPTIONS
    if unknown:
        raise MetadataError(f"custom field {name!r}: unknown options {sorted(unknown)}")
    typ = raw.get("type", "string")
    if typ not in FIELD_TYPES or typ in ("id", "address"):
        raise MetadataError(f"custom field {name!r}: type {typ!r} is not supported")
    length = int(raw.get("length", 255 if typ in ("string", "picklist", "url", "email") else 0))
    if typ == "textarea":
        length = int(raw.get("length", 32768))
    if typ == "reference":
        length = 18
    refs = raw.get("reference_to") or ()
    if isinstance(refs, str):
        refs = (refs,)
    return FieldSpec(
        name=name,
        type=typ,
        label=str(raw.get("label") or name[:-3].replace("_", " ")),
        length=length,
        precision=int(raw.get("precision", 18 if typ in ("double", "currency", "percent") else 0)),
        scale=int(raw.get("scale", 2 if typ in ("currency", "percent", "double") else 0)),
        nillable=not raw.get("required", False) and typ != "boolean",
        unique=bool(raw.get("unique", False)),
        external_id=bool(raw.get("external_id", False)),
        custom=True,
        picklist_values=tuple(raw.get("picklist_values") or ()),
        reference_to=tuple(refs),
        defaulted_on_create=typ == "boolean" or "default" in raw,
        default=raw.get("default", False if typ == "boolean" else None),
    )


def custom_object(name: str, raw: Mapping[str, Any]) -> ObjectSpec:
    """A custom object: standard system fields, a Name, then the declared custom fields."""
    if not name.endswith("__c"):
        raise MetadataError(f"custom object {name!r} must end in __c")
    prefix = str(raw.get("key_prefix") or "")
    if len(prefix) != 3 or not prefix.isalnum():
        raise MetadataError(f"custom object {name!r} needs a 3-character key_prefix")
    fields = [
        *_id_fields(),
        FieldSpec("Name", "string", f"{name[:-3]} Name", length=80, nillable=False),
        _owner(),
        *_audit_fields(),
        *(custom_field(n, spec or {}) for n, spec in (raw.get("fields") or {}).items()),
    ]
    label = str(raw.get("label") or name[:-3].replace("_", " "))
    return ObjectSpec(name, prefix, label, tuple(fields), custom=True)


def with_custom_fields(spec: ObjectSpec, raw: Mapping[str, Any]) -> ObjectSpec:
    extra = tuple(custom_field(n, f or {}) for n, f in raw.items())
    clash = {f.name.lower() for f in extra} & {f.name.lower() for f in spec.fields}
    if clash:
        raise MetadataError(f"{spec.name}: custom fields {sorted(clash)} already exist")
    return replace(spec, fields=spec.fields + extra)


STANDARD_OBJECTS = {"Account": account_spec, "Contact": contact_spec}


@dataclass(frozen=True)
class Schema:
    """Every object of the org, looked up case-insensitively like Salesforce does."""

    objects: tuple[ObjectSpec, ...]

    def get(self, name: str) -> ObjectSpec | None:
        low = name.lower()
        return next((o for o in self.objects if o.name.lower() == low), None)

    def by_prefix(self, key_prefix: str) -> ObjectSpec | None:
        return next((o for o in self.objects if o.key_prefix == key_prefix), None)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objects]


def build_schema(objects_config: Mapping[str, Mapping[str, Any] | None]) -> Schema:
    """The org's schema from the configuration's ``objects`` section.

    Standard objects take ``custom_fields``; custom objects (``*__c``) take ``key_prefix``
    and ``fields``. Objects that are neither are refused, rather than invented.
    """
    specs: list[ObjectSpec] = []
    for name, raw in objects_config.items():
        raw = raw or {}
        if name in STANDARD_OBJECTS:
            spec = STANDARD_OBJECTS[name]()
            spec = with_custom_fields(spec, raw.get("custom_fields") or {})
        elif name.endswith("__c"):
            spec = custom_object(name, raw)
        else:
            raise MetadataError(f"object {name!r} is neither standard here nor custom (__c)")
        specs.append(spec)
    prefixes = [s.key_prefix for s in specs]
    if len(set(prefixes)) != len(prefixes):
        raise MetadataError(f"key prefixes collide: {prefixes}")
    return Schema(tuple(specs))
