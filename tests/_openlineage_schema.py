"""JSON Schema (Draft 2020-12) for the OpenLineage run events this project emits, written for this project
after the OpenLineage 2-0-2 specification (https://openlineage.io/spec/2-0-2/OpenLineage.json).

No PyPI package ships the specification's schema files (the ``openlineage-python`` client only writes their
URLs into ``schemaURL`` / ``_schemaURL``), so tests/test_openlineage.py checks the events against this
module instead. It covers the parts of the contract our events use, not the whole specification:

* the run event: ``eventTime`` (date-time), ``producer`` and ``schemaURL`` (URIs), ``eventType`` (one of
  START, RUNNING, COMPLETE, ABORT, FAIL, OTHER), ``run`` (``runId`` a UUID, its facets), ``job`` (namespace,
  name, facets), ``inputs`` / ``outputs`` (datasets: namespace, name, facets, and input or output facets);
* the rule every facet follows: ``_producer`` and ``_schemaURL`` are required URIs;
* each facet our events carry, or the client adds to them: ``schema``, ``version``, ``errorMessage``,
  ``jobType``, ``processing_engine``, ``tags``, ``sourceCodeLocation``, ``environmentVariables``.

Each schema's ``$id`` is the URL the client (``openlineage-python`` 1.54) writes for it, so a facet's schema
is found from its ``_schemaURL`` (``<$id>#/$defs/<facet>``), and a client that moves to another version of a
facet finds no schema here. A facet schema also names, under ``properties``, the key the facet goes under.

``format: uri`` is only annotated by ``jsonschema`` unless ``rfc3987`` is installed, so URIs also carry a
pattern: an absolute URI starts with a scheme and a colon (RFC 3986, section 3.1).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
FACETS = "https://openlineage.io/spec/facets"

STRING: Schema = {"type": "string"}
URI: Schema = {"type": "string", "format": "uri", "pattern": r"^[A-Za-z][A-Za-z0-9+.\-]*:"}


def _obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    """An object with these properties (others allowed, as everywhere in OpenLineage)."""
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def _facet_map(kind: str) -> Schema:
    """A ``facets`` object: facet key -> a facet of ``kind`` (RunFacet, JobFacet, DatasetFacet, ...)."""
    return {"type": "object", "additionalProperties": {"$ref": f"#/$defs/{kind}"}}


# -- the core: one run event ---------------------------------------------------------------------------------
_DELETABLE: Schema = {"$ref": "#/$defs/BaseFacet", "properties": {"_deleted": {"type": "boolean"}}}

CORE_SCHEMA: Schema = {
    "$schema": DRAFT,
    "$id": CORE,
    "description": "An OpenLineage run event: a state change of one run of one job, with its datasets.",
    "$ref": "#/$defs/RunEvent",
    "$defs": {
        "BaseFacet": _obj(("_producer", "_schemaURL"), _producer=URI, _schemaURL=URI),
        "RunFacet": {"$ref": "#/$defs/BaseFacet"},
        "JobFacet": _DELETABLE,
        "DatasetFacet": _DELETABLE,
        "InputDatasetFacet": {"$ref": "#/$defs/BaseFacet"},
        "OutputDatasetFacet": {"$ref": "#/$defs/BaseFacet"},
        "Run": _obj(("runId",), runId={"type": "string", "format": "uuid"}, facets=_facet_map("RunFacet")),
        "Job": _obj(("namespace", "name"), namespace=STRING, name=STRING, facets=_facet_map("JobFacet")),
        "Dataset": _obj(("namespace", "name"), namespace=STRING, name=STRING, facets=_facet_map("DatasetFacet")),
        "InputDataset": {"$ref": "#/$defs/Dataset", **_obj(inputFacets=_facet_map("InputDatasetFacet"))},
        "OutputDataset": {"$ref": "#/$defs/Dataset", **_obj(outputFacets=_facet_map("OutputDatasetFacet"))},
        "RunEvent": _obj(
            ("eventTime", "producer", "schemaURL", "run", "job"),
            eventTime={"type": "string", "format": "date-time"},
            producer=URI,
            schemaURL=URI,
            eventType={"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
            run={"$ref": "#/$defs/Run"},
            job={"$ref": "#/$defs/Job"},
            inputs=_array({"$ref": "#/$defs/InputDataset"}),
            outputs=_array({"$ref": "#/$defs/OutputDataset"}),
        ),
    },
}


# -- the facets ------------------------------------------------------------------------------------------------
def _facet(name: str, version: str, key: str, kind: str, body: Schema, **helpers: Schema) -> Schema:
    """The schema of facet ``name`` at ``version``: ``$defs/<name>`` is the facet (the core's ``kind`` plus
    ``body``), and ``properties`` says it goes under ``key``; ``helpers`` are further ``$defs`` it refers to."""
    return {
        "$schema": DRAFT,
        "$id": f"{FACETS}/{version}/{name}.json",
        "$defs": {name: {"$ref": f"{CORE}#/$defs/{kind}", **body}, **helpers},
        "type": "object",
        "properties": {key: {"$ref": f"#/$defs/{name}"}},
    }


_SCHEMA_FIELD: Schema = _obj(
    ("name",),
    name=STRING,
    type=STRING,
    description=STRING,
    ordinal_position={"type": "integer"},  # 1 for the first column
    fields=_array({"$ref": "#/$defs/SchemaDatasetFacetFields"}),  # the members of a struct column
)

FACET_SCHEMAS: list[Schema] = [
    _facet(
        "SchemaDatasetFacet",
        "1-2-0",
        "schema",
        "DatasetFacet",
        _obj(fields=_array({"$ref": "#/$defs/SchemaDatasetFacetFields"})),
        SchemaDatasetFacetFields=_SCHEMA_FIELD,
    ),
    _facet(
        "DatasetVersionDatasetFacet",
        "1-0-1",
        "version",
        "DatasetFacet",
        _obj(("datasetVersion",), datasetVersion=STRING),
    ),
    _facet(
        "ErrorMessageRunFacet",
        "1-0-1",
        "errorMessage",
        "RunFacet",
        _obj(("message", "programmingLanguage"), message=STRING, programmingLanguage=STRING, stackTrace=STRING),
    ),
    _facet(
        "JobTypeJobFacet",
        "2-0-4",
        "jobType",
        "JobFacet",
        _obj(("processingType", "integration"), processingType=STRING, integration=STRING, jobType=STRING),
    ),
    _facet(
        "ProcessingEngineRunFacet",
        "1-1-1",
        "processing_engine",
        "RunFacet",
        _obj(("version",), version=STRING, name=STRING, openlineageAdapterVersion=STRING),
    ),
    _facet(
        "TagsRunFacet",
        "1-0-0",
        "tags",
        "RunFacet",
        _obj(tags=_array(_obj(("key", "value"), key=STRING, value=STRING, source=STRING))),
    ),
    _facet(
        "SourceCodeLocationJobFacet",
        "1-1-0",
        "sourceCodeLocation",
        "JobFacet",
        _obj(
            ("type", "url"),
            type=STRING,  # git, svn, ...
            url=URI,
            **{k: STRING for k in ("repoUrl", "path", "version", "tag", "branch", "pullRequestNumber")},
        ),
    ),
    _facet(
        "EnvironmentVariablesRunFacet",
        "1-0-0",
        "environmentVariables",
        "RunFacet",
        _obj(
            ("environmentVariables",), environmentVariables=_array(_obj(("name", "value"), name=STRING, value=STRING))
        ),
    ),
]

SCHEMAS: list[Schema] = [CORE_SCHEMA, *FACET_SCHEMAS]
"""Every schema, each identified by its ``$id``."""
