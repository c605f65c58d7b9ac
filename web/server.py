"""Serves the built page (web/dist) on 127.0.0.1 only: Python's static file server with the
.wasm type browsers need for streaming compilation, and no caching (a rebuild shows at once)."""

import argparse
import functools
import http.server


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".gz": "application/octet-stream",
    }

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, fmt, *args):
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--directory", default="web/dist")
    a = p.parse_args()
    handler = functools.partial(Handler, directory=a.directory)
    with http.server.ThreadingHTTPServer(("127.0.0.1", a.port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
