"""Train the reader page tower's line reader (CTC); optionally ship it into the package.

    python scripts/train_page_reader.py --config configs/reader/page_reader.yaml [--resume]
    python scripts/train_page_reader.py --config configs/reader/page_reader.yaml --export

``--export`` copies the run's ``final`` reader into ``mmembed/weights/`` (what
``mmembed.load("mmembed-mini", page="reader")`` reads); measure it first with
``python -m benchmarks.pages --routes reader --reader runs/page_reader/final``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mmembed.encoders.reader import PACKAGE_WEIGHTS, READER_NAME, load_reader, save_reader
from mmembed.train.page_reader import TRAIN_COMMAND, load_train_cfg, train_reader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/reader/page_reader.yaml"))
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--export", action="store_true", help="ship the run's final reader")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_train_cfg(args.config)
    final = Path(cfg.output_dir) / "final"
    if args.export:
        record = json.loads((final / "reader.json").read_text(encoding="utf-8"))
        record.pop("reader")
        paths = save_reader(load_reader("reader", final), PACKAGE_WEIGHTS, READER_NAME, record)
        print(f"wrote {paths[0]} ({paths[0].stat().st_size / 1e6:.1f} MB) and {paths[1]}")
        return 0
    record = train_reader(cfg, args.resume, f"{TRAIN_COMMAND} {args.config.as_posix()}")
    print(json.dumps(record["training"]["history"][-3:], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
