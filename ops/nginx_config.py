"""The project's nginx template (deploy/nginx/templates) rendered and wrapped in a main
nginx.conf, as the nginx image does, for an unprivileged nginx on loopback: the rollout
drill's edge and the deployment tests'."""

import getpass
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NGINX_TEMPLATE = REPO / "deploy" / "nginx" / "templates" / "default.conf.template"

_TEMPLATE_VARIABLE = re.compile(r"\$\{(NGINX_[A-Z0-9_]+)\}")


def template_variables(text: str) -> set[str]:
    """The ${NGINX_*} variables a template declares."""
    return set(_TEMPLATE_VARIABLE.findall(text))


def render_template(text: str, values: dict[str, str]) -> str:
    """What the nginx image's envsubst makes of the template: ${NGINX_*} replaced, $vars kept."""
    missing = template_variables(text) - values.keys()
    if missing:
        raise KeyError(f"no value for {sorted(missing)}")
    return _TEMPLATE_VARIABLE.sub(lambda match: values[match[1]], text)


def write_nginx_config(prefix: Path, values: dict[str, str]) -> Path:
    """A main nginx.conf under `prefix` that includes the rendered deploy template.

    What the nginx image's own nginx.conf does around conf.d/, with the pid, logs and temp
    files inside `prefix` so that an unprivileged, throwaway nginx can run it.
    """
    (prefix / "conf.d").mkdir(parents=True, exist_ok=True)
    (prefix / "temp").mkdir(exist_ok=True)
    site = prefix / "conf.d" / NGINX_TEMPLATE.name.removesuffix(".template")
    site.write_text(render_template(NGINX_TEMPLATE.read_text(), values))
    # Workers of a root master would run as nobody, which cannot enter a private temp dir.
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(
        f"""{user}
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
worker_rlimit_nofile 16384;
events {{ worker_connections 4096; }}  # as deploy/nginx/nginx.conf
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {site};
}}
"""
    )
    return main


def loopback_values(
    certs: Path, upstreams: list[str], *, https_port: int, http_port: int
) -> dict[str, str]:
    """Every template variable for an nginx on 127.0.0.1 in front of `upstreams` (host:port
    each), with the certificate in `certs` (`branchloans certs`)."""
    return {
        "NGINX_SERVER_NAMES": "localhost 127.0.0.1",
        "NGINX_HTTP_PORT": f"127.0.0.1:{http_port}",
        "NGINX_HTTPS_PORT": f"127.0.0.1:{https_port}",
        "NGINX_PUBLIC_HTTPS_PORT": str(https_port),
        # The template's way to list several servers.
        "NGINX_UPSTREAM": "; server ".join(upstreams),
        "NGINX_CERT": str(certs / "server.crt"),
        "NGINX_CERT_KEY": str(certs / "server.key"),
        "NGINX_WRITE_RATE": "10r/s",
        "NGINX_WRITE_BURST": "20",
        "NGINX_MAX_BODY_SIZE": "1m",
        "NGINX_TRACE_SAMPLE_PERCENT": "10",
    }


@contextmanager
def running_nginx(prefix: Path, values: dict[str, str]) -> Iterator[Path]:
    """nginx on the rendered template under `prefix` until the block ends, once its TLS port
    accepts connections; yields its log (access log and errors)."""
    config = write_nginx_config(prefix, values)
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if nginx is None:
        raise FileNotFoundError("nginx is missing: apt-get install nginx")
    log = prefix / "nginx.log"
    command = [nginx, "-e", "stderr", "-p", str(prefix), "-c", str(config), "-g", "daemon off;"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        host, port = values["NGINX_HTTPS_PORT"].rsplit(":", 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield log
    finally:
        process.terminate()
        process.wait(10)
