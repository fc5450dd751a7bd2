"""Two versions of creditgate served side by side: did a change make the gateway faster?

Full ``make bench`` runs of the same code differ by a few hundredths in their ratios, more
than many changes are worth. This runs ``creditgate serve`` from this checkout (A) and from
another checkout (B, e.g. ``git worktree add /tmp/before HEAD~1``) on one seeded database,
pinned and alternated exactly like the bench, and prints A/B for requests/s (median of
per-round ratios) and for CPU per request.

    python -m bench.ab /tmp/before --rounds 8 --pairs 2 --operations editor,dashboard
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.run import DEFAULT_POSTGRES, OPERATIONS, Bench, _shares, _summary
from bench.servers import ROOT, Server, creditgate_command, pinned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other checkout (B)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per operation (8)")
    parser.add_argument("--pairs", type=int, default=2, help="fresh pairs of servers (2)")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per load (2)")
    parser.add_argument("--connections", type=int, default=16, help="concurrency (16)")
    parser.add_argument("--operations", default="editor,dashboard", help=", ".join(OPERATIONS))
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CREDITGATE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
    )
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    other = args.other.resolve()
    if not (other / "app").is_dir():
        parser.error(f"{other} is not a creditgate checkout")
    operations = [op for op in args.operations.split(",") if op]
    unknown = set(operations) - set(OPERATIONS)
    if unknown:
        parser.error(f"unknown operations: {', '.join(sorted(unknown))}")
    # What Bench reads of its arguments; the load generator is always wrk when present.
    args.python_client = False
    args.keep = False
    args.no_scaling = True

    with tempfile.TemporaryDirectory(prefix="creditgate-ab-") as tmp:
        bench = Bench(args, Path(tmp))
        database_url = bench.fresh_database("postgres")
        try:
            fixture = bench.seed("postgres", database_url)
            env = bench.server_env(database_url)
            specs = bench.specs(fixture)
            trees = {"A": ROOT, "B": other}

            @contextmanager
            def start_pair(pair: int) -> Iterator[dict[str, Server]]:
                with ExitStack() as stack:
                    servers = {}
                    for name, tree in trees.items():
                        server = Server(
                            name,
                            pinned(creditgate_command(), bench.server_cpus),
                            # The other checkout's packages first: its app, same venv.
                            {**env, "PYTHONPATH": str(tree)},
                            Path(tmp) / f"{name}-{pair}.log",
                        )
                        stack.callback(server.stop)
                        server.start("/graphql")
                        servers[name] = server
                    yield servers

            rounds = bench.paired_rounds(
                start_pair,
                {op: {name: specs[op]["creditgate"] for name in trees} for op in operations},
                "ab",
                args.rounds,
            )
        finally:
            bench.drop_database("postgres")

    pairs = len(_shares(args.rounds, args.pairs))
    print(f"A = {ROOT}, B = {other}; {args.rounds} rounds over {pairs} pairs")
    for op in operations:
        summary = _summary(rounds[op])
        cpu = summary["A"]["cpu_ms_per_request"] / summary["B"]["cpu_ms_per_request"]
        per_round = " ".join(f"{r:.2f}" for r in summary["ratio"]["rps_per_round"])
        print(
            f"  {op:10} A/B req/s {summary['ratio']['rps']:.3f}  CPU per request {cpu:.3f}  "
            f"rounds {per_round}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
