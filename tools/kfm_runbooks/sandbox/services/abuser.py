"""The `abusive-client` fault: a real client flooding the sandbox API (loopback only).

It presents itself as a scraper behind a proxy (X-Forwarded-For: a TEST-NET address) and
requests layers as fast as it can until stopped or its time is up.
"""

from __future__ import annotations

import argparse
import time
import urllib.error
import urllib.request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    if not args.url.startswith("http://127.0.0.1:"):
        raise SystemExit("refusing: the flood client only targets the loopback sandbox")
    deadline = time.monotonic() + args.seconds
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only, checked above
        f"{args.url}/api/v1/layers",
        headers={
            "X-Forwarded-For": args.client,
            "User-Agent": "scraper/1.0",
            "Authorization": "Bearer tok-public-0001",
        },
    )
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError:
            pass  # 429s are the point
        except OSError:
            time.sleep(0.2)


if __name__ == "__main__":
    main()
