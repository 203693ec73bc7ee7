"""The process that writes the database, alone: replay's steps 2-5 over stage one's results.

Stage one (parse, filters, contacts, priority) runs once, in this process, over
bench/replay.py's generated mail, and its results are pickled to a file (`--dump`).
Each run then unpickles them, as the writing process does with what the workers send,
and decides, renders and writes them in batches of 256 into a fresh database, with no
workers beside it: its CPU and instruction counts are the writer's own and move little
from run to run, where a whole replay's move by 20 % on a shared machine.

    .venv/bin/python bench/writer.py --dump /tmp/analyses.pkl --count 6000
    .venv/bin/python bench/writer.py /tmp/analyses.pkl [--count 2048]
    valgrind --tool=cachegrind --cache-sim=no .venv/bin/python bench/writer.py /tmp/analyses.pkl --count 2048
    strace -c -f -e trace=pwrite64,pread64 .venv/bin/python bench/writer.py /tmp/analyses.pkl --count 2048

With `--count 0` it measures the fixed cost (imports, rules, loading the file), to be
taken from an instruction count.
"""

from __future__ import annotations

import argparse
import pickle
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def dump(target: Path, count: int) -> None:
    """Stage one over `count` generated messages, each result pickled as a worker sends it."""
    from replay import generate

    from triage.config import Config
    from triage.core.pipeline import Rules
    from triage.engine.pool import analyse_item
    from triage.sources.files import Item

    with tempfile.TemporaryDirectory() as tmp:
        rules = Rules.load(Config(db=Path(tmp) / "rules.db"))
        files = Path(tmp) / "files"
        files.mkdir()
        blobs = []
        for n, raw in enumerate(generate(count)):
            path = Path(tmp) / f"{n:06d}.eml"
            path.write_bytes(raw)
            result = analyse_item(Item(str(path), None, path=str(path)), rules, files)
            blobs.append(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    target.write_bytes(pickle.dumps(blobs))


def write(source: Path, count: int | None) -> None:
    from triage import log
    from triage.config import Config
    from triage.core.pipeline import Rules
    from triage.engine.batch import run_batch
    from triage.store.sqlite import Store

    blobs = pickle.loads(source.read_bytes())[:count]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "writer.db"
        log.setup("warning")
        rules = Rules.load(Config(db=db))
        store = Store(db)
        store.outbox_status = "replay"
        counts: dict[str, int] = {}
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.process_time()
        for at in range(0, len(blobs), 256):
            analyses = [pickle.loads(b) for b in blobs[at : at + 256]]
            for d in run_batch(store, rules, analyses, NOW):
                counts[str(d.action)] = counts.get(str(d.action), 0) + 1
        cpu = time.process_time() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        store.close()
    n = max(1, len(blobs))
    print(
        f"writer {cpu / n * 1e6:,.0f} µs a message (user {(after.ru_utime - before.ru_utime) / n * 1e6:,.0f},"
        f" system {(after.ru_stime - before.ru_stime) / n * 1e6:,.0f}), {len(blobs):,} messages: {counts}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, nargs="?", help="stage one's results (from --dump)")
    parser.add_argument("--dump", type=Path, help="run stage one and write its results here")
    parser.add_argument("--count", type=int, help="messages (--dump: 6000; else all in the file)")
    args = parser.parse_args()
    if args.dump:
        dump(args.dump, args.count or 6000)
    elif args.file:
        write(args.file, args.count)
    else:
        parser.error("give the results file, or --dump FILE")


if __name__ == "__main__":
    main()
