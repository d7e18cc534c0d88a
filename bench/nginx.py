"""nginx for the benches: a static origin and a stock ``proxy_cache`` proxy, each in a temp prefix.

Each instance runs as ``nginx -p <dir> -c <dir>/nginx.conf -g 'daemon off;'`` with
``worker_processes 1``, logs only errors, and keeps its pid, temp files and cache under ``<dir>``.
Started as a :class:`ServerProcess` in a session of its own, so ``stop()`` ends the master and
its workers together.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.servers.process import ServerProcess

# Headers the Tina4 demo app sends on every response, so that the static origin's responses
# (and the entries the proxies store from it) are as heavy as the app's.
TINA4_LIKE_HEADERS = {
    "X-Request-ID": "5734e49b",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'nonce-ERbakSv4VmUHLzM2NTobYg=='; "
    "script-src 'self' 'nonce-ERbakSv4VmUHLzM2NTobYg=='",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-XSS-Protection": "0",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin-allow-popups",
}


def nginx_binary() -> str | None:
    """nginx on PATH, else the Debian location (/usr/sbin is not on every user's PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def nginx_version(binary: str) -> str:
    """``nginx/1.22.1`` (``nginx -v`` prints to stderr)."""
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    text = (done.stderr or done.stdout).strip()
    return text.removeprefix("nginx version: ") or "nginx (unknown version)"


def _main_block(prefix: Path, http_body: str) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # the worker must write the cache dir
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp}\n"
        f"{http_body}"
        "}\n"
    )


def static_origin_conf(prefix: Path, port: int, root: Path) -> str:
    """A static file server: every file under ``root`` as application/json, Tina4-like headers."""
    headers = "\n".join(
        f"        add_header {name} {_quote(value)};" for name, value in TINA4_LIKE_HEADERS.items()
    )
    body = (
        "    default_type application/json;\n"
        "    keepalive_requests 1000000;\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port} backlog=4096;\n"
        f"        root {root};\n"
        f"{headers}\n"
        "    }\n"
    )
    return _main_block(prefix, body)


def proxy_conf(prefix: Path, cache_port: int, pass_port: int, app_port: int, origin_port: int) -> str:
    """Stock nginx in front of the app: ``proxy_cache`` on ``cache_port`` (``/fill.json`` goes to
    the static origin, everything else to the app) and a plain ``proxy_pass`` to the static
    origin on ``pass_port``."""
    body = f"""\
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=bench:64m inactive=60m use_temp_path=off;
    upstream app {{
        server 127.0.0.1:{app_port};
        keepalive 64;
    }}
    upstream origin {{
        server 127.0.0.1:{origin_port};
        keepalive 64;
    }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {{
        listen 127.0.0.1:{cache_port} backlog=4096;
        proxy_cache bench;
        proxy_cache_valid 200 300s;
        proxy_cache_lock on;
        add_header X-Cache-Status $upstream_cache_status;
        location / {{
            proxy_pass http://app;
        }}
        location = /fill.json {{
            proxy_pass http://origin;
        }}
    }}
    server {{
        listen 127.0.0.1:{pass_port} backlog=4096;
        location / {{
            proxy_pass http://origin;
        }}
    }}
"""
    return _main_block(prefix, body)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def start_nginx(binary: str, name: str, prefix: Path, conf: str, port: int) -> ServerProcess:
    """Write ``conf`` to ``prefix/nginx.conf``, check it with ``nginx -t`` and start it in the
    foreground; ready once ``port`` accepts connections."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf_path = prefix / "nginx.conf"
    conf_path.write_text(conf)
    base = [binary, "-p", str(prefix), "-c", str(conf_path)]
    checked = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise RuntimeError(f"{name}: nginx -t refused {conf_path}:\n{checked.stderr.strip()}")
    server = ServerProcess(name, lambda _: [*base, "-g", "daemon off;"], port=port)
    return server.start()


def worker_pids(master_pid: int) -> list[int]:
    """The nginx worker processes of ``master_pid`` (not the cache manager or loader)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == master_pid and b"worker process" in cmdline:
            pids.append(int(entry.name))
    return pids
