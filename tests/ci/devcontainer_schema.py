"""A JSON schema, written for these tests, of devcontainer.json as the Dev Container
specification (containers.dev, "devcontainer.json reference") defines it.

No package on the registries these machines reach ships the specification's own schema file,
so the properties this project uses, and their neighbours, are described here from the
reference; unknown properties are refused, so a misspelt one cannot pass silently.
"""

from typing import Any

_STRINGS = {"type": "array", "items": {"type": "string"}}
# A lifecycle command: one shell string, an argv array, or named commands run in parallel.
_COMMAND = {
    "oneOf": [
        {"type": "string"},
        _STRINGS,
        {"type": "object", "additionalProperties": {"oneOf": [{"type": "string"}, _STRINGS]}},
    ]
}
_PORT = {
    "oneOf": [
        {"type": "integer", "minimum": 0, "maximum": 65535},
        {"type": "string", "pattern": r"^([a-z0-9.-]+:)?\d{1,5}$"},
    ]
}
_PORT_ATTRIBUTES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "label": {"type": "string"},
        "protocol": {"enum": ["http", "https"]},
        "onAutoForward": {
            "enum": ["notify", "openBrowser", "openBrowserOnce", "openPreview", "silent", "ignore"]
        },
        "requireLocalPort": {"type": "boolean"},
        "elevateIfNeeded": {"type": "boolean"},
    },
}
_ENVIRONMENT = {"type": "object", "additionalProperties": {"type": ["string", "null"]}}

_COMMON = {
    "name": {"type": "string"},
    "forwardPorts": {"type": "array", "items": _PORT, "uniqueItems": True},
    "portsAttributes": {"type": "object", "additionalProperties": _PORT_ATTRIBUTES},
    "otherPortsAttributes": _PORT_ATTRIBUTES,
    "features": {"type": "object"},
    "overrideFeatureInstallOrder": _STRINGS,
    "customizations": {"type": "object"},
    "containerEnv": {"type": "object", "additionalProperties": {"type": "string"}},
    "remoteEnv": _ENVIRONMENT,
    "containerUser": {"type": "string"},
    "remoteUser": {"type": "string"},
    "updateRemoteUserUID": {"type": "boolean"},
    "userEnvProbe": {"enum": ["none", "loginShell", "loginInteractiveShell", "interactiveShell"]},
    "overrideCommand": {"type": "boolean"},
    "init": {"type": "boolean"},
    "privileged": {"type": "boolean"},
    "capAdd": _STRINGS,
    "securityOpt": _STRINGS,
    "mounts": {"type": "array", "items": {"type": ["string", "object"]}},
    "hostRequirements": {"type": "object"},
    "waitFor": {
        "enum": [
            "initializeCommand",
            "onCreateCommand",
            "updateContentCommand",
            "postCreateCommand",
            "postStartCommand",
        ]
    },
    "initializeCommand": _COMMAND,
    "onCreateCommand": _COMMAND,
    "updateContentCommand": _COMMAND,
    "postCreateCommand": _COMMAND,
    "postStartCommand": _COMMAND,
    "postAttachCommand": _COMMAND,
}

DEVCONTAINER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "devcontainer.json (Docker Compose form)",
    "type": "object",
    "required": ["dockerComposeFile", "service", "workspaceFolder"],
    "additionalProperties": False,
    "properties": {
        **_COMMON,
        "dockerComposeFile": {"oneOf": [{"type": "string"}, {**_STRINGS, "minItems": 1}]},
        "service": {"type": "string"},
        "runServices": _STRINGS,
        "workspaceFolder": {"type": "string"},
        "shutdownAction": {"enum": ["none", "stopCompose"]},
    },
}
