"""Command line: ``threadx <command>`` or ``python -m threadx <command>``.

info                       CPU, devices, profile location and fingerprint, current decisions
autotune [--sizes N ...] [--runs R] [--indicators NAME ...] [--no-progress]
profile show|reset|path    inspect or forget this machine's measurements
profile prune [--days N]   remove other machines' entries not updated for N days (default 90)
demo                       indicators on built-in synthetic data
version
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

INFO_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)


def _info() -> None:
    import threadx
    from threadx._registry import NAMES as INDICATORS

    cpu = threadx.cpu_info()
    fp = threadx.profile.fingerprint()
    print(f"threadx {threadx.__version__}")
    print(
        f"CPU: {cpu.model}; {cpu.physical_cores} physical / {cpu.logical_cores} logical cores, "
        f"hyperthreading {'on' if cpu.hyperthreading else 'off'}"
    )
    st = threadx.gpu.status()
    if st["available"]:
        for d in st["devices"]:
            print(
                f"GPU {d['index']}: {d['name']} ({d['arch']}, {d['memory_bytes'] / 2**30:.0f} GiB), "
                f"driver {st['driver_version']}, NVRTC {st['nvrtc_version']}"
            )
    else:
        print(f"GPUs: none usable ({st['reason']})")
    forced = threadx.get_threads()
    print(
        f"Worker count: {'forced to ' + str(forced) if forced else 'planned per call'} "
        f"(cap {threadx.optimal_workers()})"
    )
    where = threadx.profile.path()
    why = threadx.profile.memory_only_reason()
    print(f"Profile: {where}" if where else f"Profile: in memory only ({why})")
    print(f"Fingerprint: {fp['id']} (build {fp['build_hash']}, {fp['cpu_model']})")
    print("\nCurrent decisions (backend per indicator and rows; * = from measurements):")
    print(f"  {'indicator':<12}" + "".join(f"{s:>14,}" for s in INFO_SIZES))
    for ind in INDICATORS:
        cells = []
        for n in INFO_SIZES:
            plan = threadx.explain(ind, n)
            measured = "*" if plan.profile_entries and "fastest" in plan.reason else " "
            cells.append(f"{plan.backend + measured:>14}")
        print(f"  {ind:<12}" + "".join(cells))


def _profile(action: str, everything: bool, days: int | None = None) -> None:
    from threadx import profile

    if action == "path":
        print(profile.path() or f"(in memory: {profile.memory_only_reason()})")
    elif action == "show":
        data = profile.show() if everything else profile.machine()
        print(json.dumps(data, indent=2, sort_keys=True))
    elif action == "reset":
        profile.reset()
        print(f"forgot this machine's measurements in {profile.path() or 'memory'}")
    elif action == "prune":
        removed = profile.prune(days)
        where = profile.path() or "memory"
        print(f"removed {len(removed)} entries of other machines or builds from {where}")
        for fid in removed:
            print(f"  {fid}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="threadx", description="threadx indicator engine")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="compute indicators on built-in synthetic OHLCV data")
    sub.add_parser("version", help="print the version")
    sub.add_parser("info", help="CPU, devices, profile and the planner's current decisions")
    tune = sub.add_parser("autotune", help="measure every backend and write the profile")
    tune.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    tune.add_argument("--runs", type=int, default=3)
    tune.add_argument("--indicators", nargs="+", default=None)
    tune.add_argument("--no-progress", action="store_true")
    prof = sub.add_parser("profile", help="inspect or reset the persisted profile")
    prof.add_argument("action", choices=["show", "reset", "path", "prune"])
    prof.add_argument("--all", action="store_true", help="show: every machine's entry")
    prof.add_argument(
        "--days",
        type=int,
        default=None,
        help="prune: entries not updated for this many days (default THREADX_PROFILE_EXPIRY_DAYS)",
    )
    args = parser.parse_args(argv)

    if args.command == "demo":
        from threadx.demo import run

        run()
    elif args.command == "version":
        import threadx

        print(threadx.__version__)
    elif args.command == "info":
        _info()
    elif args.command == "autotune":
        import threadx

        try:
            summary = threadx.autotune(
                sizes=args.sizes,
                runs=args.runs,
                indicators=args.indicators,
                progress=not args.no_progress,
            )
        except ValueError as e:
            parser.error(str(e))
        print(summary)
    elif args.command == "profile":
        if args.days is not None and args.action != "prune":
            parser.error("--days applies to 'profile prune' only")
        if args.days is not None and not 0 <= args.days <= 10**6:
            parser.error(f"argument --days: must be in [0, 1000000], got {args.days}")
        _profile(args.action, args.all, args.days)
    return 0


if __name__ == "__main__":
    sys.exit(main())
