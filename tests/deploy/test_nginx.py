"""The nginx template: every variable supplied, and `nginx -t` accepts what it renders to."""

import subprocess
from pathlib import Path
from typing import Any

from branchloans.certs import ensure_certificates
from tests.deploy.support import (
    NGINX_TEMPLATE,
    free_port,
    render_template,
    require,
    template_variables,
    write_nginx_config,
)


def nginx_values(rendered: dict[str, Any], certs: Path) -> dict[str, str]:
    """compose's nginx environment, with what only exists inside Compose made local."""
    values: dict[str, str] = rendered["services"]["nginx"]["environment"]
    return values | {
        "NGINX_HTTP_PORT": str(free_port()),
        "NGINX_HTTPS_PORT": str(free_port()),
        "NGINX_UPSTREAM": f"127.0.0.1:{free_port()}",
        "NGINX_CERT": str(certs / "server.crt"),
        "NGINX_CERT_KEY": str(certs / "server.key"),
    }


def test_nginx_accepts_the_config_compose_renders(rendered: dict[str, Any], tmp_path: Path) -> None:
    nginx = require("nginx", "nginx")
    paths = ensure_certificates(tmp_path / "certs").paths
    config = write_nginx_config(tmp_path / "nginx", nginx_values(rendered, paths.directory))

    result = subprocess.run(
        [nginx, "-t", "-q", "-e", "stderr", "-p", str(config.parent), "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr


def test_rendering_keeps_nginx_variables_and_replaces_only_declared_ones() -> None:
    template = NGINX_TEMPLATE.read_text()
    values = {name: f"<{name}>" for name in template_variables(template)}

    text = render_template(template, values)

    assert "${" not in text
    assert "$request_uri" in text
    assert "$binary_remote_addr" in text
    assert "server <NGINX_UPSTREAM>;" in text
