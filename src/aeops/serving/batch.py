"""`aeops score`: score a large CSV/Parquet file, or a folder of images, in chunks (constant memory) into a Parquet
file; for an image model, optionally its anomaly maps as PNG heatmaps and predicted masks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeops.errors import AeopsError, DataError
from aeops.io import atomic_path
from aeops.scoring.batch import check_paths, load_model, predict, scored_chunks

FILE_COLUMN = "file"  # an image folder's rows: the image's path under the folder, first in the output


@dataclass
class ScoreSummary:
    """What a batch scoring wrote: rows, the shares flagged and out of range, warnings about the input."""

    rows: int
    flagged_share: float | None = None
    out_of_range_share: float | None = None  # rows with a feature outside the training range ± 10 % span
    warnings: list[str] = field(default_factory=list)


def score_file(model_uri: str, input_path: str | Path, output_path: str | Path, *, chunk_rows: int = 50_000,
               output: str = "scores", explain: int = 0, heatmaps: str | Path | None = None,
               progress: bool = True) -> ScoreSummary:
    """Write the model's per-row output for every input row (a table's, or an image folder's images: a `file`
    column first) to a Parquet file; summarise the batch. `explain` > 0 adds each row's top features
    (`Scorer.score`); `heatmaps` (image models): a new folder for each row's map over its image and its mask."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src, dst = Path(input_path), Path(output_path)
    folder = src.is_dir()
    check_paths(src, dst, chunk_rows=chunk_rows, folders=True)
    heat_dir = None if heatmaps is None else Path(heatmaps)
    if heat_dir is not None and (heat_dir.exists() and (not heat_dir.is_dir() or any(heat_dir.iterdir()))
                                 or heat_dir.resolve() in (dst.resolve(), src.resolve())):
        raise DataError(f"{heat_dir}: exists (or is the input or the output); name a new folder for the heatmaps "
                        "(nothing is replaced)")
    model, scorer = load_model(model_uri)
    files, rows = _image_rows(src, scorer, model_uri=model_uri, chunk_rows=chunk_rows) if folder else ([], None)
    if heat_dir is not None:
        _check_maps(scorer, model_uri, output)
    params: dict[str, object] = {"output": output}
    if explain:
        schema = model.metadata.get_params_schema()
        if scorer is None or schema is None or "explain" not in {p.name for p in schema.params}:
            raise AeopsError(f"{model_uri}: this model takes no explain parameter (registered before explanations, "
                             "or not an aeops model); register it again with this aeops")
        scorer.check_explain(explain, output)  # a bad k is one line before any row is read
        params["explain"] = explain
    done, writer, flagged, outside = 0, None, 0, 0
    with atomic_path(dst) as tmp, _maybe_dir(heat_dir) as heat_tmp:
        try:
            for chunk, out in scored_chunks(model, src, chunk_rows=chunk_rows, params=params, label="score",
                                            progress=progress, rows=rows):
                names = pd.Series(files[done : done + len(chunk)], name=FILE_COLUMN) if folder else None
                if heat_tmp is not None:
                    maps = out if output == "anomaly_map" else predict(model, chunk, src=src, start=done,
                                                                       params={"output": "anomaly_map"})
                    _write_heatmaps(heat_tmp, chunk, maps, scorer=scorer, start=done, names=names)
                if names is not None:
                    out = pd.concat([names, out.reset_index(drop=True)], axis=1)
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


def _maybe_dir(path: Path | None) -> Any:
    """`atomic_path` for a new folder (made empty inside), or nothing."""
    if path is None:
        return nullcontext()

    @contextmanager
    def folder() -> Iterator[Path]:
        with atomic_path(path, replace_dir=True) as tmp:
            tmp.mkdir(parents=True)
            yield tmp

    return folder()


def _check_maps(scorer: Any, model_uri: str, output: str) -> None:
    """One line unless the model is an aeops image model with a pixel threshold (evaluate sets one)."""
    if scorer is None or not scorer.image:
        raise AeopsError(f"{model_uri}: heatmaps need an image model (its anomaly map); a table model's rows have "
                         "explanations instead (--explain K)")
    if scorer.pixel_threshold is None:
        raise AeopsError(f"{model_uri}: the model has no pixel threshold (evaluated before aeops drew masks); run "
                         "`dvc repro evaluate` and register it again")
    if output == "reconstruction":
        raise AeopsError("heatmaps go with --output-mode scores or anomaly_map, not reconstruction")


def _image_rows(folder: Path, scorer: Any, *, model_uri: str, chunk_rows: int
                ) -> tuple[list[str], tuple[Iterator[pd.DataFrame], int]]:
    """An image folder's images (recursively): their paths under the folder, and their raw pixel rows at the model's
    size, `chunk_rows` at a time (with the total); one line for a model that is not an image one."""
    from aeops.data.images import list_images, pixel_rows, same_stem

    if scorer is None or not scorer.image:
        raise AeopsError(f"{folder}: is a folder, and a folder is read as images, which needs an image model; "
                         f"{model_uri} is not one: score a CSV/Parquet file (a folder of Parquet files is not read yet)")
    if scorer.pixel_max is None:
        raise AeopsError(f"{model_uri}: the model does not record its white pixel's raw value (evaluated by an older "
                         "aeops); run `dvc repro evaluate` and register it again, or score a table of pixels")
    files, _ = list_images(folder)
    clash = same_stem(files, folder)  # <name>_heatmap.png drops the suffix: a.jpg and a.png would share one
    if clash is not None:
        raise DataError(f"{clash[1]}: has the name of {clash[0].name} but another suffix (their heatmaps would share "
                        "one file); rename one of them")

    def chunks() -> Iterator[pd.DataFrame]:
        for a in range(0, len(files), chunk_rows):
            part = files[a : a + chunk_rows]
            yield pd.DataFrame(pixel_rows(part, scorer.image_shape, scorer.pixel_max, scorer.image_fit),
                               columns=scorer.features)

    return [p.relative_to(folder).as_posix() for p in files], (chunks(), len(files))


def _write_heatmaps(folder: Path, chunk: pd.DataFrame, maps: pd.DataFrame, *, scorer: Any, start: int,
                    names: pd.Series | None) -> None:
    """<name>_heatmap.png (the map over the image) and <name>_mask.png (map > the pixel threshold) per row; <name>
    is an image's path under its folder without the suffix, else row<number>."""
    from PIL import Image

    from aeops.figures import heatmap_rgb

    c, h, w = scorer.image_shape
    images = chunk[scorer.features].to_numpy(np.float64).reshape(len(chunk), c, h, w)
    values = maps[scorer.features].to_numpy(np.float64).reshape(len(chunk), c, h, w).mean(axis=1)
    hi = float(scorer.pixel_max) if scorer.pixel_max else max(float(images.max()), 1.0)
    for i in range(len(chunk)):
        name = Path(names.iloc[i]).with_suffix("").as_posix() if names is not None else f"row{start + i:07d}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image = images[i, 0] if c == 1 else images[i].transpose(1, 2, 0)
        Image.fromarray(heatmap_rgb(image, values[i], threshold=scorer.pixel_threshold, hi=hi)).save(
            folder / f"{name}_heatmap.png")
        Image.fromarray((values[i] > scorer.pixel_threshold).astype(np.uint8) * 255).save(folder / f"{name}_mask.png")
