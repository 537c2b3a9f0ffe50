"""`faceid serve`: serve a gallery over HTTP."""

import argparse
import os

from faceid.commands.options import (
    add_gallery_options,
    add_threshold_override_option,
    add_workers_option,
    open_gallery_from,
    positive_count,
)

SUMMARY = "serve a gallery over HTTP"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gallery_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    parser.add_argument("--api-key", default=None,
                        help="require this X-API-Key header (default: $FACEID_API_KEY if set)")
    parser.add_argument("--max-request-mb", type=float, default=20.0, help="largest accepted request body")
    parser.add_argument("--max-pixels", type=positive_count, default=40_000_000,
                        help="largest accepted image, in pixels, checked from its header before decoding")
    parser.add_argument("--read-timeout", type=float, default=10.0,
                        help="seconds a request body may stall before the request is refused (408)")
    add_threshold_override_option(parser)
    add_workers_option(parser, 1, help="server processes sharing the gallery (default 1)")
    parser.add_argument("--threads", type=positive_count, default=4, help="reader threads per process (default 4)")
    parser.add_argument("--batch-size", type=positive_count, default=32,
                        help="most /identify requests per embedder batch")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0,
                        help="how long the first request of a batch waits for others (default 5 ms)")


def run(args: argparse.Namespace) -> int:
    from faceid.gallery.service.app import serve

    if min(args.workers, args.threads, args.batch_size, args.max_pixels) < 1 or args.read_timeout <= 0:
        raise ValueError("--workers, --threads, --batch-size, --max-pixels and --read-timeout must be positive")
    with open_gallery_from(args) as gallery:
        serve(gallery, args.host, args.port, args.api_key or os.environ.get("FACEID_API_KEY"),
              int(args.max_request_mb * 1024 * 1024), workers=args.workers, device=args.device,
              max_pixels=args.max_pixels, read_timeout_s=args.read_timeout,
              threshold_override=args.threshold_override, threads=args.threads, batch_size=args.batch_size,
              batch_wait_ms=args.batch_wait_ms)
    return 0
