"""``describe`` and global describe in the shape Salesforce's REST API answers them."""

from __future__ import annotations

from typing import Any

from sf_sync.devorg.metadata import FieldSpec, ObjectSpec, Schema

SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "int": "xsd:int",
    "double": "xsd:double", "currency": "xsd:double", "percent": "xsd:double",
    "date": "xsd:date", "datetime": "xsd:dateTime", "address": "urn:address",
}  # fmt: skip


def object_urls(obj: ObjectSpec, version: str) -> dict[str, str]:
    base = f"/services/data/v{version}/sobjects/{obj.name}"
    return {
        "sobject": base,
        "describe": f"{base}/describe",
        "rowTemplate": f"{base}/{{ID}}",
    }


def object_summary(obj: ObjectSpec, version: str) -> dict[str, Any]:
    """One entry of the global describe."""
    return {
        "name": obj.name,
        "label": obj.label,
        "labelPlural": obj.label + "s",
        "keyPrefix": obj.key_prefix,
        "custom": obj.custom,
        "queryable": True,
        "retrieveable": True,
        "searchable": True,
        "createable": True,
        "updateable": True,
        "deletable": True,
        "undeletable": True,
        "replicateable": True,
        "triggerable": True,
        "layoutable": True,
        "mergeable": not obj.custom,
        "customSetting": False,
        "deprecatedAndHidden": False,
        "feedEnabled": False,
        "urls": object_urls(obj, version),
    }


def field_describe(obj: ObjectSpec, f: FieldSpec) -> dict[str, Any]:
    return {
        "name": f.name,
        "label": f.label,
        "type": f.type,
        "soapType": SOAP_TYPES.get(f.type, "xsd:string"),
        "length": f.length,
        "byteLength": f.length * 3,
        "precision": f.precision,
        "scale": f.scale,
        "digits": 9 if f.type == "int" else 0,
        "nillable": f.nillable,
        "createable": f.createable,
        "updateable": f.updateable,
        "defaultedOnCreate": f.defaulted_on_create,
        "defaultValue": f.default,
        "unique": f.unique,
        "externalId": f.external_id,
        "idLookup": f.name == "Id" or f.external_id,
        "custom": f.custom,
        "calculated": obj.name == "Contact" and f.name == "Name",
        "compoundFieldName": f.compound_field_name,
        "filterable": f.type != "address",
        "sortable": f.type not in ("address", "textarea"),
        "groupable": f.type not in ("address", "textarea", "double", "currency", "percent"),
        "nameField": f.name == "Name",
        "picklistValues": [
            {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
            for v in f.picklist_values
        ],
        "restrictedPicklist": False,
        "referenceTo": list(f.reference_to),
        "relationshipName": (f.name[:-2] if f.name.endswith("Id") else None)
        if f.type == "reference"
        else None,
        "caseSensitive": False,
        "htmlFormatted": False,
        "autoNumber": False,
    }


def describe(obj: ObjectSpec, version: str) -> dict[str, Any]:
    return {
        **object_summary(obj, version),
        "fields": [field_describe(obj, f) for f in obj.fields],
        "childRelationships": [],
        "recordTypeInfos": [],
    }


def global_describe(schema: Schema, version: str) -> dict[str, Any]:
    return {
        "encoding": "UTF-8",
        "maxBatchSize": 200,
        "sobjects": [object_summary(o, version) for o in schema.objects],
    }
