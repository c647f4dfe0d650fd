"""Account-level consent, applied to each source batch before any image is
decoded: records of accounts on the opt-out list are dropped
(``account_opt_out``), and ``--drop-if`` rules on ``account.<field>`` read
the account's row of an accounts table (Parquet, CSV or JSON lines with the
account column), e.g. ``account.is_private=true:account_private``."""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastprep.errors import SettingsError

PREFIX = "account."


@lru_cache(maxsize=4)
def _accounts_table(path: str, column: str, mtime: float) -> pa.Table:
    if path.endswith(".csv"):
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(path)
    elif path.endswith((".json", ".jsonl", ".ndjson")):
        import pyarrow.json as pjson

        table = pjson.read_json(path)
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    if column not in table.schema.names:
        raise SettingsError(f"accounts table {path} has no {column!r} column")
    table = table.set_column(
        table.schema.get_field_index(column), column, table.column(column).cast(pa.string())
    )
    return table.rename_columns([n if n == column else PREFIX + n for n in table.schema.names])


def accounts_table(path: str, column: str) -> pa.Table:
    """An accounts table, its fields renamed ``account.<field>``."""
    return _accounts_table(os.path.abspath(path), column, os.path.getmtime(path))


def account_consent(batch: pa.RecordBatch, settings) -> tuple[pa.RecordBatch, pa.Table | None]:
    """``(records that may go on, dropped records)`` of one source batch."""
    from fastprep.pipeline.outputs import drop_table
    from fastprep.pipeline.stages import consent_reasons

    column = settings.account_column
    rules = tuple(r for r in settings.consent_rules if r.column.startswith(PREFIX))
    if not column or not (settings.opt_out_accounts or rules):
        return batch, None
    if column in batch.schema.names:
        ids = pc.cast(batch.column(column), pa.string())
    else:
        ids = pa.nulls(batch.num_rows, pa.string())
    reasons = np.full(batch.num_rows, None, dtype=object)
    if settings.opt_out_accounts:
        listed = pa.array(list(settings.opt_out_accounts), pa.string())
        hit = pc.fill_null(pc.is_in(ids, value_set=listed), False).to_numpy(zero_copy_only=False)
        reasons[hit] = "account_opt_out"
    if rules:
        if settings.accounts is None:
            raise SettingsError("rules on account.<field> need an accounts table (accounts=)")
        table = accounts_table(settings.accounts, column)
        joined = pa.table({column: ids, "_row": pa.array(np.arange(batch.num_rows))}).join(
            table, column, join_type="left outer"
        )
        if joined.num_rows != batch.num_rows:
            raise SettingsError(f"accounts table {settings.accounts} lists an account twice")
        joined = joined.sort_by("_row")
        found = consent_reasons(pa.RecordBatch.from_pydict(
            {n: joined.column(n).combine_chunks() for n in joined.schema.names}
        ), rules)  # fmt: skip
        free = reasons == None  # noqa: E711 (elementwise)
        reasons[free] = found[free]
    refused = np.flatnonzero(reasons != None)  # noqa: E711
    if not len(refused):
        return batch, None
    index = pa.array(refused, pa.int64())
    drops = drop_table(
        pc.take(batch.column("key"), index),
        pc.take(batch.column("source"), index),
        reasons[refused],
    )
    return batch.filter(pa.array(reasons == None)), drops  # noqa: E711
