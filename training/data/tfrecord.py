"""Sharded TFRecord export of any landmark dataset, and its reader (``--dataset tfrecord``).

For a large or teacher-labelled set that lives as many small files (or a slow network
folder), export it once into a few big files and train from those:

    python -m training.data.tfrecord mpii /data/mpii --split train --out /data/mpii-tfr --shards 16
    python -m training.train --config configs/mpii_binary_hpm.yaml dataset.name=tfrecord \\
        dataset.path=/data/mpii-tfr dataset.val_name=mpii dataset.val_path=/data/mpii

Layout: ``DIR/records-00000-of-00016.tfrecord`` ... and ``DIR/index.json`` (skeleton,
record counts, source, skipped records). Each record is a ``tf.train.Example`` with
``image`` (the image, JPEG- or PNG-encoded), ``image_crc32`` (zlib CRC-32 of those bytes),
``points`` (K x 2 float, image pixels), ``visible`` (K int), ``box`` (centre x, centre y, side,
rotation), ``head_size`` (float, -1 when the dataset has none), ``id``, and ``yaw``,
``occluded`` and ``scores`` (the teacher's per-point scores) where the dataset has them
(empty lists otherwise; files written before ``scores`` existed read as without them). Record ``i`` goes to shard
``i % shards``, so every shard is an even sample of the set.

The reader is an ordinary :class:`~training.data.base.LandmarkDataset`: it indexes where
each record starts when it opens (reading the 12-byte headers only), so the training
pipeline's shuffle, its per-worker sharding (each worker reads only its own records) and
evaluation all work unchanged. A damaged record (a CRC or length that does not match, an
unparsable Example, an image that does not decode) is skipped and counted like any other
corrupt record. TFRecord's own CRC-32C is not checked (Python has no fast CRC-32C without
an extra package); the image's zlib CRC-32 covers the bulk of each record instead.

This is the one reader that imports TensorFlow (for the ``tf.train.Example`` message):
the format is TensorFlow's.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from edge.cli import ArgumentParser, positive_int, run_cli
from edge.skeletons import get_skeleton
from edge.transform import CropBox

from .base import (
    CorruptSample,
    DatasetError,
    LandmarkDataset,
    Sample,
    open_dataset,
    read_scores,
)

INDEX = "index.json"
FORMAT = 1
_HEADER = struct.Struct("<QI")  # record length, masked CRC-32C of the length
_FOOTER = 4  # masked CRC-32C of the data


def shard_name(i: int, shards: int) -> str:
    return f"records-{i:05d}-of-{shards:05d}.tfrecord"


def _example(sample: Sample, encoded: bytes):
    import tensorflow as tf

    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(v).tolist()))

    def ints(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=np.ravel(v).tolist()))

    def raw(b: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[b]))

    box = sample.box
    features = {
        "image": raw(encoded),
        "image_crc32": ints([zlib.crc32(encoded)]),
        "points": floats(sample.points),
        "visible": ints(sample.visible.astype(np.int64)),
        "box": floats([box.center[0], box.center[1], box.size, box.rotation]),
        "head_size": floats([-1.0 if sample.head_size is None else sample.head_size]),
        "id": raw(sample.id.encode()),
    }
    # Optional per-sample fields (face sets have them); an empty list means none.
    yaw, occluded = getattr(sample, "yaw", None), getattr(sample, "occluded", None)
    features["yaw"] = floats([] if yaw is None else [yaw])
    features["occluded"] = ints([] if occluded is None else occluded.astype(np.int64))
    features["scores"] = floats([] if sample.scores is None else sample.scores)
    return tf.train.Example(features=tf.train.Features(feature=features))


def export(
    dataset: LandmarkDataset,
    out: Path,
    *,
    shards: int = 8,
    image_format: str = "jpg",
    quality: int = 95,
    source: str = "",
    progress=None,
) -> dict:
    """Write ``dataset`` as ``shards`` TFRecord files plus ``index.json``; return the index.

    Corrupt source records are skipped and counted in the index (and in
    ``dataset.skipped``). ``image_format`` "png" keeps pixels exact; "jpg" (quality
    ``quality``) is a fraction of the size.
    """
    import cv2
    import tensorflow as tf

    from .base import iter_samples

    if image_format not in ("jpg", "png"):
        raise DatasetError(f"image format must be jpg or png, got {image_format!r}")
    if shards < 1:
        raise DatasetError(f"shards must be positive, got {shards}")
    out.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if image_format == "jpg" else []
    counts = [0] * shards
    indices = range(len(dataset))
    samples = iter_samples(dataset, progress(indices) if progress else indices)
    writers = [tf.io.TFRecordWriter(str(out / shard_name(i, shards))) for i in range(shards)]
    try:
        written = 0
        for sample in samples:
            ok, encoded = cv2.imencode(f".{image_format}", sample.image, params)
            if not ok:
                dataset.skipped.record(written, "the image does not encode")
                continue
            shard = written % shards
            writers[shard].write(_example(sample, encoded.tobytes()).SerializeToString())
            counts[shard] += 1
            written += 1
    finally:
        for w in writers:
            w.close()
    index = {
        "format": FORMAT,
        "skeleton": dataset.skeleton.name,
        "records": sum(counts),
        "shards": [{"file": shard_name(i, shards), "records": n} for i, n in enumerate(counts)],
        "source": source,
        "skipped": dataset.skipped.count,
        "skipped_reasons": dataset.skipped.reasons,
    }
    (out / INDEX).write_text(json.dumps(index, indent=1))
    return index


class TFRecordDataset(LandmarkDataset):
    """A folder written by :func:`export`; ``split`` is ignored (export each split apart)."""

    def __init__(self, path: str | Path | None, split: str = "train") -> None:
        if path is None:
            raise DatasetError(
                "tfrecord: dataset.path must be the folder written by "
                "python -m training.data.tfrecord"
            )
        folder = Path(path)
        folder = folder.parent if folder.name == INDEX else folder
        try:
            index = json.loads((folder / INDEX).read_text())
        except FileNotFoundError:
            raise DatasetError(f"tfrecord: no {INDEX} in {folder}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"tfrecord: cannot read {folder / INDEX}: {exc}") from None
        if index.get("format") != FORMAT:
            raise DatasetError(
                f"tfrecord: {folder / INDEX} is format {index.get('format')!r}, "
                f"this reader reads {FORMAT}"
            )
        self.skeleton = get_skeleton(index["skeleton"])
        self.folder = folder
        self.files: list[Path] = []
        self._where: list[tuple[int, int, int]] = []  # (file, data offset, data length)
        for shard in index["shards"]:
            self.files.append(folder / shard["file"])
            self._where += self._scan(len(self.files) - 1, shard["records"])

    def _scan(self, file: int, expected: int) -> list[tuple[int, int, int]]:
        """Where each record's data starts, from the length headers alone."""
        path = self.files[file]
        try:
            size = path.stat().st_size
            f = open(path, "rb")
        except OSError as exc:
            raise DatasetError(f"tfrecord: cannot open {path}: {exc.strerror or exc}") from None
        found, offset = [], 0
        with f:
            while offset + _HEADER.size <= size:
                f.seek(offset)
                length, _ = _HEADER.unpack(f.read(_HEADER.size))
                end = offset + _HEADER.size + length + _FOOTER
                if end > size:
                    break  # a truncated last record: the rest of the file is unusable
                found.append((file, offset + _HEADER.size, length))
                offset = end
        if len(found) < expected:
            # Counted like corrupt records: the missing ones simply are not offered.
            self.skipped.record(
                len(self._where) + len(found),
                f"{path.name}: {expected - len(found)} record(s) missing or truncated",
            )
        return found

    def __len__(self) -> int:
        return len(self._where)

    def load(self, index: int) -> Sample:
        import cv2
        from tensorflow.core.example.example_pb2 import Example

        file, offset, length = self._where[self._check_index(index)]
        with open(self.files[file], "rb") as f:
            f.seek(offset)
            data = f.read(length)
        try:
            feature = Example.FromString(data).features.feature
            encoded = feature["image"].bytes_list.value[0]
            crc = feature["image_crc32"].int64_list.value[0]
            points = np.asarray(feature["points"].float_list.value, np.float32).reshape(-1, 2)
            visible = np.asarray(feature["visible"].int64_list.value, bool)
            cx, cy, side, rotation = feature["box"].float_list.value
            head = feature["head_size"].float_list.value[0]
            name = feature["id"].bytes_list.value[0].decode()
            extra = {}
            if feature["yaw"].float_list.value:
                extra["yaw"] = float(feature["yaw"].float_list.value[0])
            if feature["occluded"].int64_list.value:
                extra["occluded"] = np.asarray(feature["occluded"].int64_list.value, bool)
            scores = list(feature["scores"].float_list.value) or None
        except Exception as exc:  # protobuf's DecodeError, a missing feature, wrong lengths
            raise CorruptSample(f"record {index}: not a landmark Example ({exc})") from None
        if zlib.crc32(encoded) != crc:
            raise CorruptSample(f"record {index}: image bytes damaged (CRC-32 mismatch)")
        image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise CorruptSample(f"record {index}: the image does not decode")
        if len(points) != self.skeleton.num_landmarks or len(visible) != len(points):
            raise CorruptSample(
                f"record {index}: {len(points)} points, {len(visible)} "
                f"flags for {self.skeleton.num_landmarks} landmarks"
            )
        return Sample(
            image,
            points,
            visible,
            CropBox((cx, cy), side, rotation),
            head_size=None if head < 0 else float(head),
            id=name,
            scores=read_scores(scores, len(points), self.bad_scores, index),
            **extra,
        )


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m training.data.tfrecord",
        description="Export a landmark dataset as sharded TFRecord files that "
        "training reads with dataset.name=tfrecord dataset.path=OUT.",
    )
    p.add_argument("dataset", help="dataset name, as in training configs (mpii, coco, 300w, ...)")
    p.add_argument(
        "data",
        nargs="?",
        default=None,
        help="annotation file or dataset root (none for synthetic sets)",
    )
    p.add_argument("--split", default="train", help="which split to export")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader option, e.g. size=500 for synthetic sets (repeatable)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the shards and index.json")
    p.add_argument(
        "--shards",
        type=positive_int,
        default=8,
        help="number of files (at least one per worker and more for big sets)",
    )
    p.add_argument(
        "--format",
        choices=("jpg", "png"),
        default="jpg",
        help="image encoding: jpg (small) or png (exact pixels)",
    )
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        import yaml
        from tqdm import tqdm

        options = {}
        for item in args.option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise DatasetError(f"--option {item!r} must look like key=value")
            options[key] = yaml.safe_load(value)
        dataset = open_dataset(args.dataset, args.data, split=args.split, **options)
        index = export(
            dataset,
            args.out,
            shards=args.shards,
            image_format=args.format,
            quality=args.quality,
            source=f"{args.dataset} {args.data or ''} split={args.split}".strip(),
            progress=lambda it: tqdm(it, desc="export", unit="record"),
        )
        skipped = f", skipped {index['skipped']} corrupt" if index["skipped"] else ""
        print(f"wrote {index['records']} records in {args.shards} shards to {args.out}{skipped}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
