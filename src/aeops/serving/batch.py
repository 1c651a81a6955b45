"""`aeops score`: score a large CSV/Parquet file in chunks (constant memory) into a Parquet file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aeops.errors import AeopsError
from aeops.io import atomic_path
from aeops.scoring.batch import check_paths, load_model, scored_chunks


@dataclass
class ScoreSummary:
    """What a batch scoring wrote: rows, the shares flagged and out of range, warnings about the input."""

    rows: int
    flagged_share: float | None = None
    out_of_range_share: float | None = None  # rows with a feature outside the training range ± 10 % span
    warnings: list[str] = field(default_factory=list)


def score_file(model_uri: str, input_path: str | Path, output_path: str | Path, *, chunk_rows: int = 50_000,
               output: str = "scores", explain: int = 0, progress: bool = True) -> ScoreSummary:
    """Write the model's per-row output for every input row to a Parquet file; summarise the batch.
    `explain` > 0 adds each row's top features (`Scorer.score`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src, dst = Path(input_path), Path(output_path)
    check_paths(src, dst, chunk_rows=chunk_rows)
    model, scorer = load_model(model_uri)
    params: dict[str, object] = {"output": output}
    if explain:
        schema = model.metadata.get_params_schema()
        if scorer is None or schema is None or "explain" not in {p.name for p in schema.params}:
            raise AeopsError(f"{model_uri}: this model takes no explain parameter (registered before explanations, "
                             "or not an aeops model); register it again with this aeops")
        scorer.check_explain(explain, output)  # a bad k is one line before any row is read
        params["explain"] = explain
    done, writer, flagged, outside = 0, None, 0, 0
    with atomic_path(dst) as tmp:
        try:
            for chunk, out in scored_chunks(model, src, chunk_rows=chunk_rows, params=params, label="score",
                                            progress=progress):
                if scorer is not None and output == "scores":
                    flagged += int(out["is_anomaly"].sum())
                    outside += int((out["out_of_range"] > 0).sum())
                table = pa.Table.from_pandas(out, preserve_index=False)
                if writer is None:  # a text column that is empty in the first chunk is still text
                    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema],
                                       metadata=table.schema.metadata)
                    writer = pq.ParquetWriter(tmp, schema)
                writer.write_table(table.cast(writer.schema))
                done += len(chunk)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise AeopsError(f"{src}: no rows to score")
    if scorer is None or output != "scores":
        return ScoreSummary(done)
    return ScoreSummary(done, flagged / done, outside / done, scorer.batch_warnings(done, outside, flagged))
