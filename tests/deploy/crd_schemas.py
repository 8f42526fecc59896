"""JSON schemas, written for these tests, of the custom resources the manifests use.

The Kubernetes schemas shipped by `kubernetes-validate` cover only built-in kinds; the
CloudNativePG `Cluster` and the Prometheus Operator `ServiceMonitor` are CRDs. These schemas
describe the subset of each CRD's fields this repository uses, closed to anything else, so a
misspelt or misplaced field fails here instead of being dropped by the cluster.
"""

from typing import Any

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$"}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
    },
}
_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": _NAME,
        "namespace": _NAME,
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "additionalProperties": False,
}


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


CNPG_CLUSTER = _resource(
    "postgresql.cnpg.io/v1",
    "Cluster",
    {
        "type": "object",
        "required": ["instances", "storage"],
        "additionalProperties": False,
        "properties": {
            "instances": {"type": "integer", "minimum": 1},
            "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
            "primaryUpdateMethod": {"enum": ["switchover", "restart"]},
            "enablePDB": {"type": "boolean"},
            "bootstrap": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "initdb": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["database", "owner"],
                        "properties": {"database": _NAME, "owner": _NAME},
                    }
                },
            },
            "postgresql": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"parameters": _STRING_MAP},
            },
            # CNPG-I plugins (CloudNativePG 1.26+): the Barman Cloud plugin archives the WAL.
            "plugins": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "enabled": {"type": "boolean"},
                        "isWALArchiver": {"type": "boolean"},
                        "parameters": _STRING_MAP,
                    },
                },
            },
            "storage": {
                "type": "object",
                "additionalProperties": False,
                "required": ["size"],
                "properties": {"size": _QUANTITY, "storageClass": {"type": "string"}},
            },
            "resources": _RESOURCES,
            "affinity": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "enablePodAntiAffinity": {"type": "boolean"},
                    "topologyKey": {"type": "string"},
                    "podAntiAffinityType": {"enum": ["preferred", "required"]},
                },
            },
        },
    },
)

SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"matchLabels": _STRING_MAP},
            },
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["port", "path"],
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string", "pattern": "^/"},
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "scheme": {"enum": ["http", "https"]},
                    },
                },
            },
        },
    },
)

_SECRET_KEY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "key"],
    "properties": {"name": _NAME, "key": {"type": "string"}},
}
_COMPRESSION = {"enum": ["gzip", "bzip2", "snappy", "lz4", "xz", "zstd"]}

# The Barman Cloud plugin's ObjectStore (barmancloud.cnpg.io/v1): the subset used here.
BARMAN_OBJECT_STORE = _resource(
    "barmancloud.cnpg.io/v1",
    "ObjectStore",
    {
        "type": "object",
        "required": ["configuration"],
        "additionalProperties": False,
        "properties": {
            "configuration": {
                "type": "object",
                "required": ["destinationPath"],
                "additionalProperties": False,
                "properties": {
                    "destinationPath": {"type": "string", "pattern": "^(s3|gs|https)://"},
                    "endpointURL": {"type": "string"},
                    "s3Credentials": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "accessKeyId": _SECRET_KEY,
                            "secretAccessKey": _SECRET_KEY,
                            "region": _SECRET_KEY,
                            "inheritFromIAMRole": {"type": "boolean"},
                        },
                    },
                    "wal": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "compression": _COMPRESSION,
                            "maxParallel": {"type": "integer", "minimum": 1},
                        },
                    },
                    "data": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "compression": _COMPRESSION,
                            "jobs": {"type": "integer", "minimum": 1},
                        },
                    },
                },
            },
            "retentionPolicy": {"type": "string", "pattern": "^[1-9][0-9]*[dwm]$"},
        },
    },
)

CNPG_SCHEDULED_BACKUP = _resource(
    "postgresql.cnpg.io/v1",
    "ScheduledBackup",
    {
        "type": "object",
        "required": ["schedule", "cluster"],
        "additionalProperties": False,
        "properties": {
            # Six fields, seconds first (robfig/cron), unlike a CronJob's five.
            "schedule": {"type": "string", "pattern": r"^\S+( \S+){5}$"},
            "immediate": {"type": "boolean"},
            "suspend": {"type": "boolean"},
            "backupOwnerReference": {"enum": ["none", "self", "cluster"]},
            "cluster": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {"name": _NAME},
            },
            "method": {"enum": ["barmanObjectStore", "volumeSnapshot", "plugin"]},
            "pluginConfiguration": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": _STRING_MAP},
            },
        },
    },
)

SCHEMAS = {
    ("postgresql.cnpg.io/v1", "Cluster"): CNPG_CLUSTER,
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): CNPG_SCHEDULED_BACKUP,
    ("barmancloud.cnpg.io/v1", "ObjectStore"): BARMAN_OBJECT_STORE,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}
