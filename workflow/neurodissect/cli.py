"""The `neurodissect` command line. Each subcommand calls the same package
function a rule does; heavy modules are imported only by the subcommand
that needs them so `neurodissect --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from .errors import NeurodissectError


def _synth(args: argparse.Namespace) -> int:
    from .data.synth import SynthParams, generate

    keys = ("n", "size", "seed", "noise", "difficulty")
    params = SynthParams(**{k: getattr(args, k) for k in keys})
    generate(args.kind, args.out, params, workers=args.workers)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from .data.prepare import PrepareParams, prepare_dataset

    keys = ("on_bad_image", "val_fraction", "test_fraction", "split_seed")
    params = PrepareParams(**{k: getattr(args, k) for k in keys})
    prepare_dataset(args.format, args.root, args.out, params, options=_options(args.option))
    return 0


def _options(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise NeurodissectError(f"--option expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def _audit(args: argparse.Namespace) -> int:
    if args.against:
        from .provenance.against import against_main

        return against_main(args)
    from .provenance.audit import audit_main

    return audit_main(args)


def _compare(args: argparse.Namespace) -> int:
    from .evaluate.compare import compare_main

    return compare_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neurodissect", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a synthetic raw dataset with ground truth")
    s.add_argument("kind", choices=["synthderm", "synthcxr"])
    s.add_argument("--out", required=True, help="folder to create (raw dataset layout)")
    s.add_argument("--n", type=int, default=3000, help="number of images")
    s.add_argument("--size", type=int, default=64, help="image side in pixels")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--noise", type=float, default=0.1, help="fraction of labels resampled")
    s.add_argument("--difficulty", type=float, default=0.5, help="0 easy .. 1 hard")
    s.add_argument(
        "--workers", type=int, default=1, help="processes drawing images (output is identical)"
    )
    s.set_defaults(func=_synth)

    s = sub.add_parser(
        "prepare-data", help="raw dataset folder -> manifest.parquet (+ boxes, concepts_gt)"
    )
    s.add_argument(
        "--format",
        required=True,
        choices=[
            "synthderm",
            "synthcxr",
            "ham10000",
            "nih14",
            "chestx-det",
            "mimic-cxr",
            "fairvlmed",
            "csv",
        ],
    )
    s.add_argument("--root", required=True, help="raw dataset folder")
    s.add_argument("--out", required=True, help="output folder (results/{dataset}/data)")
    s.add_argument("--on-bad-image", choices=["error", "skip"], default="error")
    s.add_argument("--val-fraction", type=float, default=0.15)
    s.add_argument("--test-fraction", type=float, default=0.15)
    s.add_argument("--split-seed", type=int, default=0)
    s.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="format-specific option (repeatable), e.g. image_column=file",
    )
    s.set_defaults(func=_prepare)

    s = sub.add_parser("audit", help="re-hash every artifact against its provenance")
    s.add_argument("results_dir")
    s.add_argument(
        "--skip-images",
        action="store_true",
        help="do not re-hash the raw images listed in manifests",
    )
    s.add_argument("--json", metavar="FILE", help="also write the findings as JSON")
    s.add_argument(
        "--against",
        metavar="OTHER_DIR",
        help="instead list every artifact whose content differs from the run in OTHER_DIR "
        "(sha256 of files / Zarr store contents; volatile provenance fields excluded)",
    )
    s.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="S3-compatible server for an s3:// RESULTS_DIR (default: boto3's "
        "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS)",
    )
    s.add_argument(
        "--rocrate",
        action="store_true",
        help="also write RESULTS_DIR/ro-crate-metadata.json (RO-Crate of the provenance)",
    )
    s.set_defaults(func=_audit)

    s = sub.add_parser("compare", help="one table of every run's metrics")
    s.add_argument("results_dir")
    s.set_defaults(func=_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NeurodissectError as exc:
        print(f"neurodissect {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
