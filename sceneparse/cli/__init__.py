"""The `sceneparse` command: argument parsing only; each command's work lives in the library."""
from __future__ import annotations

import argparse
import re
import sys

from sceneparse import __version__
from sceneparse.cli import benchmark, data, demo, evaluate, export, models, predict, train, weights
from sceneparse.utils import SceneparseError

DESCRIPTION = """\
Semantic segmentation of street scenes: train PSPNet, SegNet and CPU-first networks on CamVid,
Cityscapes or your own labelled images, score them with the standard metrics, segment photos,
and export them for fast CPU inference. Built-in trained models (camvid, cityscapes) work offline."""

EPILOG = """\
examples:
  sceneparse predict photo.jpg --out predictions/          segment with the built-in camvid model
  sceneparse train configs/camvid_dabnet_quick.yaml       train from a config
  sceneparse evaluate --checkpoint runs/x/best.pt --split test
Run `sceneparse COMMAND --help` for a command's options."""

COMMANDS = (models, weights, data, train, evaluate, predict, export, benchmark, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sceneparse", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sceneparse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def out_of_memory(error: BaseException) -> str | None:
    """The one-line message for an allocation that failed (torch's CPU allocator or Python's), else None."""
    if isinstance(error, MemoryError):
        asked = ""
    else:
        found = re.search(r"can't allocate memory: you tried to allocate (\d+) bytes", str(error))
        if not found:
            return None
        asked = f" ({int(found.group(1)) / 1e9:.1f} GB asked)"
    return f"out of memory{asked}: use a smaller --batch-size, --max-size, --resize, --scales or --size"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except SceneparseError as e:
        print(f"sceneparse: error: {e}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        message = out_of_memory(e)
        if message is None:
            raise
        print(f"sceneparse: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sceneparse: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sceneparse models | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
