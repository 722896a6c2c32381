"""The procfile-app example: answers every GET with its name and release (standard library only)."""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

APP = "procfile-app"


class Handler(BaseHTTPRequestHandler):
    """Name and release on every path (so a health check path answers too)."""

    def do_GET(self) -> None:
        release = os.environ.get("DOCKYARD_RELEASE", "unknown")
        body = f"{APP} release {release}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    print(f"{APP} listening on {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
