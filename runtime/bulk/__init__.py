"""Offline tagging of any number of images into result shards, exactly once (``python -m runtime bulk``).

```python
from runtime.bulk import bulk, read_records
summary = bulk("model.onnx", "tags/", images="photos/", skip_bad=True)   # engine="ray" on a Ray cluster
for record in read_records("tags/"):                                      # or pandas / pyarrow / DuckDB
    print(record["image"], record.get("labels"), record.get("error"))
```
"""

from __future__ import annotations

from .job import ENGINES, BulkSummary, bulk
from .shards import FORMATS, read_records

__all__ = ["ENGINES", "FORMATS", "BulkSummary", "bulk", "read_records"]
