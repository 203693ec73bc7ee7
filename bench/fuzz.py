"""A long fuzz run over parsing and the pipeline, by hand: hostile MIME for as long as you like.

The strategies are those of tests/test_hostile.py (hostile headers over hostile MIME
trees, amplified units up to 300,000 repetitions, RFC 2047 garbage, bombs) plus real
mail (fixtures and the corpus beside the checkout) mutated at random. Every message
goes through `analyse` + `decide` and is recorded in an in-memory store with its
acknowledgement rendered, and must keep the invariants of `tests.test_hostile.run_one`
(no exception, storable text, attachments never decompressed). Hypothesis runs with
no deadline and a large `max_examples`, in rounds with fresh seeds until the time is
up; each failure is shrunk, saved and reported, and the run goes on.

    .venv/bin/python bench/fuzz.py --minutes 12 > /tmp/fuzz.log 2>&1 &

Reported (every 60 s and at the end, also as JSON with --report): examples run,
failures, the worst CPU time for one message (with its size and kind), the process's
peak RSS, and the largest traced peak of one message (tracemalloc on one example in
--trace-every, since tracing makes every allocation slow).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import sys
import time
import traceback
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.test_hostile import CPU_LIMIT, amplified, hostile_message, run_one  # noqa: E402
from triage.config import Config  # noqa: E402
from triage.core.pipeline import Rules  # noqa: E402


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    examples: int = 0
    failures: list[dict] = field(default_factory=list)
    over_cpu_limit: int = 0
    worst_cpu: float = 0.0
    worst_cpu_size: int = 0
    worst_cpu_kind: str = ""
    worst_cpu_sha: str = ""
    worst_wall: float = 0.0
    total_bytes: int = 0
    biggest: int = 0
    traced: int = 0
    worst_traced_peak: int = 0
    worst_traced_size: int = 0
    peak_rss: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    unexpected: dict[str, int] = field(default_factory=dict)  # parse_error / pipeline_error details
    samples: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # smallest of each

    def line(self) -> str:
        mins = (time.monotonic() - self.started) / 60
        return (
            f"{mins:6.1f} min  {self.examples:,} examples  {len(self.failures)} failures  "
            f"worst {self.worst_cpu:.3f} s CPU ({self.worst_cpu_size:,} B, {self.worst_cpu_kind})  "
            f"peak RSS {self.peak_rss / 2**20:.0f} MiB  worst traced {self.worst_traced_peak / 2**20:.1f} MiB"
        )


def real_mail() -> list[bytes]:
    """Fixtures and, when it is beside the checkout, the real-mail corpus."""
    paths = sorted((ROOT / "fixtures" / "emails").glob("*.eml"))
    paths += sorted((ROOT.parent / "shared" / "corpus").rglob("*.eml"))
    return [p.read_bytes() for p in paths] or [b"From: a@b.example\r\n\r\nx"]


UNITS = [
    b"\x00",
    b"\r",
    b"\n\n",
    b"\r\n\r\n",
    b"\xff\xfe",
    b"=?",
    b"?=",
    b"=?utf-7?q?+2AA-?=",
    b"=?unicode_escape?q?\\udc80?=",
    b"--",
    b"boundary=",
    b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n',
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Type: text/html\r\n\r\n<b<b<b<!--<![",
    b"; charset=idna",
    b"<",
    b";",
    b"\\",
    b'"',
]


@st.composite
def mutated_real_mail(draw, corpus: list[bytes]) -> bytes:
    """Real mail with hostile units inserted, runs repeated, bytes flipped or cut."""
    raw = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 16))):
        op = draw(st.sampled_from(["insert", "repeat", "flip", "cut", "dup"]))
        # four times in five below the header block: a NUL or CR there is refused at once
        ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i != -1]
        low = min(ends, default=0) if draw(st.sampled_from([True] * 4 + [False])) else 0
        pos = draw(st.integers(min(low, max(0, len(raw) - 1)), max(0, len(raw) - 1)))
        if op == "insert":
            raw[pos:pos] = draw(st.sampled_from(UNITS))
        elif op == "repeat":
            raw[pos:pos] = draw(st.sampled_from(UNITS)) * draw(st.integers(2, 50_000))
        elif op == "flip" and raw:
            raw[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos : pos + draw(st.integers(1, 4096))]
        else:
            raw[pos:pos] = raw[pos : pos + draw(st.integers(1, 4096))] * draw(st.integers(1, 20))
    return bytes(raw)


def kind_of(raw: bytes) -> str:
    head = raw[:200].split(b"\r\n\r\n")[0].split(b"\n\n")[0]
    for line in head.splitlines():
        if line.lower().startswith(b"content-type:"):
            return line[13:60].strip().decode("latin-1")
    return "text"


def keep_unexpected(raw: bytes, key: str, detail: str, stats: Stats, keep: Path) -> None:
    """Save the smallest message seen for each unexpected error, to make a test of it by hand."""
    name = f"{key}-{hashlib.sha256(detail.encode()).hexdigest()[:8]}"
    path = keep / f"{name}.eml"
    if name not in stats.samples or len(raw) < stats.samples[name][1]:
        keep.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        stats.samples[name] = (str(path), len(raw), detail)


def check_one(raw: bytes, rules: Rules, stats: Stats, trace: bool, keep: Path) -> None:
    """One message through the pipeline, measured; raises what the invariants say."""
    if trace:
        tracemalloc.start()
    wall = time.perf_counter()
    cpu = time.process_time()
    try:
        d = run_one(raw, rules, "fuzz")
    finally:
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        if trace:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            stats.traced += 1
            if peak > stats.worst_traced_peak:
                stats.worst_traced_peak, stats.worst_traced_size = peak, len(raw)
    stats.examples += 1
    stats.total_bytes += len(raw)
    stats.biggest = max(stats.biggest, len(raw))
    key = d.reason if d.reason and str(d.action) == "quarantined" else str(d.action)
    stats.outcomes[key] = stats.outcomes.get(key, 0) + 1
    if key in ("parse_error", "pipeline_error"):  # an exception the parser did not expect
        detail = d.reasons[0].split(": ", 2)[-1][:100] if d.reasons else "?"
        stats.unexpected[detail] = stats.unexpected.get(detail, 0) + 1
        keep_unexpected(raw, key, detail, stats, keep)
    stats.worst_wall = max(stats.worst_wall, wall)
    if cpu > stats.worst_cpu and not trace:
        stats.worst_cpu, stats.worst_cpu_size = cpu, len(raw)
        stats.worst_cpu_kind = kind_of(raw)
        stats.worst_cpu_sha = hashlib.sha256(raw).hexdigest()[:16]
        keep.mkdir(parents=True, exist_ok=True)
        (keep / "worst-cpu.eml").write_bytes(raw)
    stats.peak_rss = max(stats.peak_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if cpu > CPU_LIMIT and not trace:
        stats.over_cpu_limit += 1
        raise AssertionError(f"{cpu:.2f} s of CPU for {len(raw):,} bytes (limit {CPU_LIMIT} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--round", type=int, default=2000, help="examples per hypothesis round")
    parser.add_argument(
        "--seed", type=int, default=None, help="first round's seed (default: random)"
    )
    parser.add_argument("--trace-every", type=int, default=25, help="tracemalloc on 1 example in N")
    parser.add_argument(
        "--failures",
        type=Path,
        default=Path("/tmp/triage-fuzz"),
        help="where shrunk failures (seed-N.eml), the smallest message of each unexpected error"
        " (pipeline_error-*.eml) and the slowest message (worst-cpu.eml) go",
    )
    parser.add_argument("--report", type=Path, default=None, help="write the final figures as JSON")
    args = parser.parse_args()

    rules = Rules.load(Config())
    corpus = real_mail()
    stats = Stats()
    deadline = time.monotonic() + args.minutes * 60
    rng = random.Random(args.seed)
    last_line = time.monotonic()
    messages = st.one_of(
        hostile_message(max_n=300_000), amplified(max_n=300_000), mutated_real_mail(corpus)
    )

    class TimeUp(BaseException):  # not an Exception: hypothesis lets it through unshrunk
        pass

    while time.monotonic() < deadline:
        round_seed = rng.randrange(2**32)

        @seed(round_seed)
        @settings(
            max_examples=args.round,
            deadline=None,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(raw=messages)
        def fuzz(raw: bytes) -> None:
            nonlocal last_line
            if time.monotonic() > deadline:
                raise TimeUp
            trace = stats.examples % args.trace_every == 0
            try:
                check_one(raw, rules, stats, trace, args.failures)
            except Exception:
                # hypothesis replays the shrunk example last: this file ends as that one
                args.failures.mkdir(parents=True, exist_ok=True)
                seed_file = f"seed-{round_seed}.eml"  # noqa: B023 - fuzz() runs in this round
                (args.failures / seed_file).write_bytes(raw)
                raise
            if time.monotonic() - last_line > 60:
                print(stats.line(), flush=True)
                last_line = time.monotonic()

        try:
            fuzz()
        except TimeUp:
            break
        except Exception as exc:  # noqa: BLE001 - a shrunk failure: keep it, go on fuzzing
            args.failures.mkdir(parents=True, exist_ok=True)
            text = "".join(traceback.format_exception(exc))  # the notes hold the shrunk example
            name = f"seed-{round_seed}"
            (args.failures / f"{name}.txt").write_text(text, encoding="utf-8")
            stats.failures.append(
                {"seed": round_seed, "error": f"{type(exc).__name__}: {exc}"[:300]}
            )
            print(
                f"FAILURE (seed {round_seed}), shrunk example in {args.failures / name}.txt"
                f" and {args.failures / name}.eml:",
                flush=True,
            )
            print(text[-2000:], flush=True)

    print(stats.line(), flush=True)
    figures = asdict(stats)
    figures["minutes"] = round((time.monotonic() - stats.started) / 60, 1)
    figures["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    print(json.dumps(figures, indent=2), flush=True)
    if args.report:
        args.report.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
