"""Screenshot the search page of ``mmembed serve`` with headless Chromium (README's picture).

    python scripts/serve_screenshot.py runs/assets-index --query "a rocket at dusk" \
        --out docs/serve.png
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path, help="index folder built by 'mmembed index'")
    parser.add_argument("--query", default="a rocket on the launch pad at dusk")
    parser.add_argument("--out", type=Path, default=Path("docs/serve.png"))
    parser.add_argument("--size", default="1280,900", help="window WIDTH,HEIGHT")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mmembed.cli", "serve", str(args.index), "--port", str(port)]
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("mmembed serve did not start") from None
                time.sleep(0.3)
        url = f"http://127.0.0.1:{port}/?{urllib.parse.urlencode({'q': args.query})}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [
                    "chromium",
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    f"--user-data-dir={profile}",
                    f"--window-size={args.size}",
                    f"--screenshot={args.out.resolve()}",
                    url,
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
        print(f"wrote {args.out}")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
