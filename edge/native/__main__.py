"""Build or inspect the native LCE delegate.

python -m edge.native build                         # for this machine, into the user cache
python -m edge.native build --cc aarch64-linux-gnu-gcc --output dist/
python -m edge.native info                          # library, kernel path, kernel speed
"""

from __future__ import annotations

import argparse
import sys

from edge.cli import ArgumentParser, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m edge.native",
        description="Build or inspect the C library that runs LCE (bitpacked) ops in stock "
        "TFLite runtimes.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="compile the library and print its path")
    build.add_argument(
        "--cc",
        default=None,
        help="C compiler (default: $CC, then cc); a cross compiler such as "
        "aarch64-linux-gnu-gcc builds for a Raspberry Pi",
    )
    build.add_argument(
        "--output",
        default=None,
        help="folder for the library (default: ~/.cache/binland/native)",
    )
    info = sub.add_parser("info", help="show the library in use and its kernel paths")
    info.add_argument(
        "--no-build",
        action="store_true",
        help="report a missing library instead of building it",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edge import native

    def body() -> int:
        if args.command == "build":
            print(native.build(args.output, cc=args.cc))
            return 0
        library = native.library_path()
        if library is None and args.no_build:
            print("library: not built (run: python -m edge.native build)")
            return 1
        library = library or native.build()
        print(f"library: {library}")
        print(f"kernel path: {native.simd_path(library)}")
        for path in native.simd_paths_available(library):
            peak = native.kernel_peak(path, 0.2, library)
            print(f"  {path:18s} {peak / 1e9:8.1f} G binary MACs/s per core")
        return 0

    return run_cli(body, errors=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
