"""JSON schemas, written for these tests, of the custom resources the manifests use.

The Kubernetes schemas shipped by `kubernetes-validate` cover only built-in kinds; the
CloudNativePG `Cluster` and `Pooler` and the Prometheus Operator's `ServiceMonitor`,
`PodMonitor` and `PrometheusRule` and `AlertmanagerConfig` are CRDs. These schemas
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
                        "properties": {
                            "database": _NAME,
                            "owner": _NAME,
                            "postInitApplicationSQL": {
                                "type": "array",
                                "items": {"type": "string"},
                            },
                        },
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
            "monitoring": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "customQueriesConfigMap": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name", "key"],
                            "properties": {"name": _NAME, "key": {"type": "string"}},
                        },
                    },
                },
            },
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

_RELABELINGS = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "sourceLabels": {"type": "array", "items": {"type": "string"}},
            "separator": {"type": "string"},
            "regex": {"type": "string"},
            "targetLabel": {"type": "string"},
            "replacement": {"type": "string"},
            "action": {"enum": ["replace", "keep", "drop", "labeldrop", "labelkeep"]},
        },
    },
}

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
                        "relabelings": _RELABELINGS,
                    },
                },
            },
        },
    },
)

POD_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "PodMonitor",
    {
        "type": "object",
        "required": ["selector", "podMetricsEndpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"matchLabels": _STRING_MAP},
            },
            "podMetricsEndpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["port"],
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string", "pattern": "^/"},
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "relabelings": _RELABELINGS,
                        "metricRelabelings": _RELABELINGS,
                    },
                },
            },
        },
    },
)

PROMETHEUS_RULE = _resource(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string"},
                        "interval": _DURATION,
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["expr"],
                                # An alerting rule or a recording rule, never both.
                                "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                "properties": {
                                    "alert": {"type": "string"},
                                    "record": {"type": "string"},
                                    "expr": {"type": "string"},
                                    "for": _DURATION,
                                    "labels": _STRING_MAP,
                                    "annotations": _STRING_MAP,
                                },
                            },
                        },
                    },
                },
            },
        },
    },
)

_MATCHERS = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "value"],
        "properties": {
            "name": {"type": "string"},
            "value": {"type": "string"},
            "matchType": {"enum": ["=", "!=", "=~", "!~"]},
        },
    },
}
_SECRET_KEY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "key"],
    "properties": {"name": _NAME, "key": {"type": "string"}},
}
_ROUTE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "receiver": {"type": "string"},
        "groupBy": {"type": "array", "items": {"type": "string"}},
        "groupWait": _DURATION,
        "groupInterval": _DURATION,
        "repeatInterval": _DURATION,
        "matchers": _MATCHERS,
        "routes": {"type": "array", "items": {"$ref": "#/properties/spec/properties/route"}},
    },
}

ALERTMANAGER_CONFIG = _resource(
    "monitoring.coreos.com/v1alpha1",
    "AlertmanagerConfig",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["route", "receivers"],
        "properties": {
            "route": _ROUTE,
            "inhibitRules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "sourceMatch": _MATCHERS,
                        "targetMatch": _MATCHERS,
                        "equal": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
            "receivers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "pagerdutyConfigs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["routingKey"],
                                "properties": {
                                    "routingKey": _SECRET_KEY,
                                    "url": {"type": "string", "pattern": "^https://"},
                                    "sendResolved": {"type": "boolean"},
                                    "severity": {"type": "string"},
                                    "description": {"type": "string"},
                                    "details": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "required": ["key", "value"],
                                            "properties": {
                                                "key": {"type": "string"},
                                                "value": {"type": "string"},
                                            },
                                        },
                                    },
                                    "pagerDutyLinkConfigs": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "properties": {
                                                "href": {"type": "string"},
                                                "alt": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                        "slackConfigs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["apiURL"],
                                "properties": {
                                    "apiURL": _SECRET_KEY,
                                    "sendResolved": {"type": "boolean"},
                                    "title": {"type": "string"},
                                    "text": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
)

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

# PgBouncer settings CloudNativePG lets a Pooler set (a subset of its allowed list).
_PGBOUNCER_PARAMETERS = (
    "default_pool_size",
    "idle_transaction_timeout",
    "max_client_conn",
    "max_db_connections",
    "min_pool_size",
    "query_timeout",
    "query_wait_timeout",
    "reserve_pool_size",
    "server_idle_timeout",
)
CNPG_POOLER = _resource(
    "postgresql.cnpg.io/v1",
    "Pooler",
    {
        "type": "object",
        "required": ["cluster", "pgbouncer"],
        "additionalProperties": False,
        "properties": {
            "cluster": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {"name": _NAME},
            },
            "instances": {"type": "integer", "minimum": 0},
            "type": {"enum": ["rw", "ro"]},
            "pgbouncer": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "poolMode": {"enum": ["session", "transaction"]},
                    "parameters": {
                        "type": "object",
                        "propertyNames": {"enum": list(_PGBOUNCER_PARAMETERS)},
                        "additionalProperties": {"type": "string", "pattern": r"^[0-9]+$"},
                    },
                },
            },
        },
    },
)

SCHEMAS = {
    ("postgresql.cnpg.io/v1", "Pooler"): CNPG_POOLER,
    ("postgresql.cnpg.io/v1", "Cluster"): CNPG_CLUSTER,
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): CNPG_SCHEDULED_BACKUP,
    ("barmancloud.cnpg.io/v1", "ObjectStore"): BARMAN_OBJECT_STORE,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): ALERTMANAGER_CONFIG,
}
