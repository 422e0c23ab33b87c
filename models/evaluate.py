"""``python -m models.evaluate``: the ML-GCN metric table of a checkpoint on a COCO-format split."""

from __future__ import annotations

from pathlib import Path

from core import cli
from core.errors import ConfigError
from core.files import check_outputs

from .evaluation import evaluate_checkpoint


def main(argv: list[str] | None = None) -> int:
    """``python -m models.evaluate``: print the metric table of a checkpoint on a dataset."""
    parser = cli.parser("python -m models.evaluate", "Score a checkpoint on a COCO-format split (ML-GCN metrics).")
    parser.add_argument("--checkpoint", type=Path, required=True, help="project checkpoint (.pt)")
    parser.add_argument("--annotations", type=Path, required=True, help="COCO instances JSON of the split")
    parser.add_argument("--images", type=Path, required=True, help="image folder of the split")
    parser.add_argument("--threshold", type=float, help="decision threshold (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--output", type=Path, help="also write the report as JSON here")
    parser.add_argument("--force", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)

    def body() -> None:
        if args.threshold is not None and not 0.0 < args.threshold < 1.0:
            raise ConfigError(f"--threshold must lie in (0, 1), got {args.threshold}")
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
        check_outputs({"--output": args.output}, [args.checkpoint, args.annotations, args.images], force=args.force)
        report = evaluate_checkpoint(
            args.checkpoint,
            args.annotations,
            args.images,
            threshold=args.threshold,
            batch_size=args.batch_size,
            output=args.output,
        )
        print(report.table())
        if args.output is not None:
            print(f"report: {args.output}")

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
