"""The single-process engine: shard after shard through one :class:`Predictor` (which decodes ahead)."""

from __future__ import annotations

from core.errors import BadInputError

from ..predictor import Predictor
from .plan import Plan, stopped_by


def run_local(plan: Plan, predictor: Predictor) -> None:
    """Tags every pending shard of ``plan`` in order.

    Raises:
        BadInputError: An image is unusable and ``plan.skip_bad`` is False; the shards before it are
            written (a resume continues from its shard).
    """
    for shard in plan.pending:
        images = plan.images(shard)
        try:
            results = predictor.predict([plan.path(image) for image in images], skip_bad=plan.skip_bad)
        except BadInputError as exc:
            raise stopped_by(shard.first + exc.index, images[exc.index], exc.problem) from exc
        plan.write(shard, images, results)
