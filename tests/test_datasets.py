"""SST-2 download: served from loopback here, since tests never reach the internet."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from core.errors import NotReady
from core.sentiment import load_labelled_data
from core.sentiment.datasets import download_sst2

TSV = b"a gorgeous , witty movie\t1\na dull , lifeless mess\t0\n"


@pytest.fixture
def server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path != "/train.tsv":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(TSV)))
            self.end_headers()
            self.wfile.write(TSV)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download_once_then_reuse(server, tmp_path):
    seen = []
    path = download_sst2(tmp_path, url=f"{server}/train.tsv",
                         progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == TSV and seen[-1] == (len(TSV), len(TSV))
    assert load_labelled_data(path).labels == (1, 0)
    again = download_sst2(tmp_path, url=f"{server}/gone.tsv")  # cached: no request needed
    assert again == path


def test_failed_download_leaves_nothing_that_looks_complete(server, tmp_path):
    with pytest.raises(NotReady, match="--data"):
        download_sst2(tmp_path, url=f"{server}/missing.tsv")
    assert list(tmp_path.iterdir()) == []
