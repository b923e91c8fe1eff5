"""CostTables as JSON files under the fastadl cache (cache_root()/budget), one file per
context (device, torch version, model sizes, input size, dtype, threads, runtime, unit)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from fastadl.budget.table import CostTable
from fastadl.cache import cache_root
from fastadl.runtime.rundir.files import write_json_atomic


def table_path(context: Mapping[str, object]) -> Path:
    """The cache file of the table measured or counted in ``context``."""
    digest = hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root() / "budget" / f"{context.get('unit', 'table')}-{digest}.json"


def table_to_dict(table: CostTable) -> dict:
    return {
        "unit": table.unit,
        "fixed": table.fixed,
        "link": [[list(k), v] for k, v in table.link.items()],
        "op": [[list(k), v] for k, v in table.op.items()],
        "head": [[list(k), v] for k, v in table.head.items()],
        "context": dict(table.context),
    }


def table_from_dict(d: Mapping[str, object]) -> CostTable:
    return CostTable(
        unit=d["unit"],
        fixed=float(d["fixed"]),
        link={tuple(k): float(v) for k, v in d["link"]},
        op={tuple(k): float(v) for k, v in d["op"]},
        head={tuple(k): float(v) for k, v in d["head"]},
        context=d["context"],
    )


def load_table(context: Mapping[str, object]) -> CostTable | None:
    """The cached table of ``context``, or None (absent, unreadable or of another context:
    measure again)."""
    path = table_path(context)
    try:
        table = table_from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    wanted = json.loads(json.dumps(dict(context)))
    return table if all(table.context.get(k) == v for k, v in wanted.items()) else None


def save_table(table: CostTable, context: Mapping[str, object]) -> Path:
    """Write ``table`` to the cache file of ``context`` (the key; the table's own context may
    add to it) atomically: a concurrent reader sees all or none."""
    path = table_path(context)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, table_to_dict(table))
    return path
