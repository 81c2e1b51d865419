"""Scoring a finder against the teacher's labels: recall and precision.

A finder network (Keras or .tflite, :func:`score_dataset`) sees each frame as the device
does: letterboxed (:func:`edge.finder_codec.letterbox`), normalised
(:func:`edge.transform.normalise_input`), run, and decoded by the model's
:class:`~edge.finder_codec.FinderCodec` back to frame pixels. Any :class:`edge.finders.Finder`
(OpenCV's Haar cascade, MediaPipe's detectors, the 1-bit finder as ``edge.live`` runs it) is
scored the same way by :func:`score_finder`: both hand their finds to one loop,
:func:`score_finds`, and one matching, :func:`match_frame`. Then, per class, the
finds are matched to the labels best find first, each to the unmatched label it overlaps most
at IoU >= ``iou`` (0.5):

* only labels at least ``min_height`` of the frame's height tall count (a sixth: the
  acceptance bar of the finder issue); smaller ones, and the teacher's weak finds the label
  tool set aside (``ignore``), are *ignored*: a find on one is neither right nor wrong, and
  missing one costs nothing;
* a find that matches no counted label is false, unless it overlaps an ignored one, or is
  itself under ``min_height`` tall (it might be one of the small people nobody counts);
* recall = matched labels / counted labels, precision = matched finds / (matched + false).

For the matched pairs the landmark crop is compared too: its centre error and its side's
error as a share of the label's side, and the rotation error in degrees. The same numbers
are given for the frames with several counted people alone, where a finder has to separate
them. ``python -m training.evaluate --dataset finder`` lands in :func:`evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from edge.boxes import iou as box_iou
from edge.boxes import square_corners
from edge.errors import ModelError
from edge.finder_codec import FinderCodec, Found, letterbox, letterbox_input
from edge.finders import PLURALS, Finder
from edge.transform import normalise_input

from ..data.base import CorruptSample
from ..predictor import Predictor, load_predictor
from ..task import EvaluateOptions
from .data import FinderDataset, FinderSample


@dataclass
class FrameMatch:
    """One frame's outcome: counts and the matched (find, label) pairs."""

    matched: int = 0
    missed: int = 0
    false: int = 0
    ignored: int = 0
    pairs: list[tuple[Found, Found]] = field(default_factory=list)

    @property
    def labels(self) -> int:
        return self.matched + self.missed

    def add(self, other: FrameMatch) -> None:
        self.matched += other.matched
        self.missed += other.missed
        self.false += other.false
        self.ignored += other.ignored
        self.pairs += other.pairs


# What a find and a label are matched on: their rectangles (``rect``, the subject's extent),
# or their landmark crops (``crop``: the upright square of ``box``, whose rotation is left out;
# the labels' crops are upright).
MATCH_ON = ("rect", "crop")


def corners(o: Found, on: str = "rect") -> np.ndarray:
    """(x0, y0, x1, y1) of ``o``'s rectangle or of its landmark crop (see :data:`MATCH_ON`)."""
    if on == "rect":
        return o.corners
    if on == "crop":
        return square_corners(o.box)
    raise ValueError(f"match on one of {MATCH_ON}, got {on!r}")


def match_frame(
    found: list[Found],
    labels: list[Found],
    ignore: list[Found],
    frame_height: int,
    *,
    min_height: float = 1.0 / 6.0,
    iou: float = 0.5,
    on: str = "rect",
) -> FrameMatch:
    """Match one frame's finds to its labels (see the module docstring); ``on``: what is
    overlapped, the rectangles or the landmark crops (:data:`MATCH_ON`). Who counts (a label's
    height) and which finds are too small to be wrong (a find's) are the rectangles' either
    way."""
    bar = min_height * frame_height
    counted = [o for o in labels if o.rect[3] >= bar]
    ignored = list(ignore) + [o for o in labels if o.rect[3] < bar]
    result = FrameMatch()
    taken: set[int] = set()
    for f in sorted(found, key=lambda f: -f.score):
        same = [i for i, o in enumerate(counted) if o.class_id == f.class_id and i not in taken]
        if same:
            overlaps = box_iou(corners(f, on), np.stack([corners(counted[i], on) for i in same]))
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou:
                taken.add(same[best])
                result.matched += 1
                result.pairs.append((f, counted[same[best]]))
                continue
        others = [o for o in ignored if o.class_id == f.class_id]
        if (
            others
            and box_iou(corners(f, on), np.stack([corners(o, on) for o in others])).max() >= iou
        ):
            result.ignored += 1
        elif f.rect[3] < bar:
            result.ignored += 1
        else:
            result.false += 1
    result.missed = len(counted) - len(taken)
    return result


def crop_errors(pairs: list[tuple[Found, Found]]) -> dict[str, float]:
    """Median crop errors of matched (find, label) pairs: centre distance and side
    difference over the label's side, rotation difference in degrees."""
    if not pairs:
        return {}
    centre, side, turn = [], [], []
    for f, o in pairs:
        size = o.box.size
        centre.append(float(np.hypot(*(np.subtract(f.box.center, o.box.center)))) / size)
        side.append(abs(f.box.size - size) / size)
        turn.append(abs((f.box.rotation - o.box.rotation + 180.0) % 360.0 - 180.0))
    return {
        "crop_centre_error": float(np.median(centre)),
        "crop_size_error": float(np.median(side)),
        "crop_rotation_error_deg": float(np.median(turn)),
    }


@dataclass
class FinderScore:
    """Totals over a set: recall, precision and the crop errors, overall and on the frames
    with several counted subjects. ``by_crop``: the same frames' finds matched on the landmark
    crops instead (:func:`score_finds` with ``by_crop``), else None."""

    frames: int = 0
    skipped: int = 0
    all: FrameMatch = field(default_factory=FrameMatch)
    crowded: FrameMatch = field(default_factory=FrameMatch)
    crowded_frames: int = 0
    kept: list = field(default_factory=list)  # (sample, finds) for pictures
    by_crop: FinderScore | None = None

    def add(self, match: FrameMatch) -> None:
        self.frames += 1
        self.all.add(match)
        if match.labels >= 2:
            self.crowded.add(match)
            self.crowded_frames += 1

    def merge(self, other: FinderScore) -> None:
        """Add ``other``'s totals (another set's) to these."""
        self.frames += other.frames
        self.skipped += other.skipped
        self.all.add(other.all)
        self.crowded.add(other.crowded)
        self.crowded_frames += other.crowded_frames
        self.kept += other.kept
        if other.by_crop is not None:
            if self.by_crop is None:
                self.by_crop = FinderScore()
            self.by_crop.merge(other.by_crop)

    @staticmethod
    def _rates(m: FrameMatch) -> dict[str, float]:
        recall = m.matched / m.labels if m.labels else float("nan")
        finds = m.matched + m.false
        precision = m.matched / finds if finds else float("nan")
        f1 = 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0
        return {"recall": recall, "precision": precision, "f1": f1}

    def values(self) -> dict[str, float]:
        out = {**self._rates(self.all), **crop_errors(self.all.pairs)}
        out.update({f"several/{k}": v for k, v in self._rates(self.crowded).items()})
        out.update(
            labels=self.all.labels,
            matched=self.all.matched,
            false=self.all.false,
            ignored=self.all.ignored,
            frames=self.frames,
            several_frames=self.crowded_frames,
        )
        return out

    def table(self, title: str = "") -> str:
        v = self.values()
        lines = [title] if title else []
        lines.append(
            f"  all frames ({self.frames}): recall {100 * v['recall']:6.2f}  precision "
            f"{100 * v['precision']:6.2f}  ({v['matched']} of {v['labels']} labels found, "
            f"{v['false']} false, {v['ignored']} on ignored or small subjects)"
        )
        lines.append(
            f"  frames with several ({self.crowded_frames}): recall "
            f"{100 * v['several/recall']:6.2f}  precision {100 * v['several/precision']:6.2f}"
        )
        if "crop_centre_error" in v:
            lines.append(
                f"  landmark crop (median, matched): centre {100 * v['crop_centre_error']:.1f}% "
                f"and side {100 * v['crop_size_error']:.1f}% of its side, rotation "
                f"{v['crop_rotation_error_deg']:.1f} deg"
            )
        return "\n".join(lines)


def check_finder(metadata, where: str, classes: tuple[str, ...]) -> None:
    if metadata.task != "finder":
        raise ModelError(
            f"{where} is a {metadata.task} model ({metadata.skeleton}); a finder dataset "
            "needs a finder model"
        )
    if tuple(metadata.classes) != tuple(classes):
        raise ModelError(
            f"{where} finds {', '.join(metadata.classes)}; the dataset's labels are "
            f"{', '.join(classes)}"
        )


# A finder of a batch of frames: the frames (BGR) in, each frame's finds out (best first, frame
# pixels, class ids in the dataset's class order).
FindBatch = Callable[[list[np.ndarray]], list[list[Found]]]


def network_finds(predictor: Predictor, codec: FinderCodec | None = None) -> FindBatch:
    """A finder network as a :data:`FindBatch`: each frame letterboxed, the batch normalised
    and run at once, each output decoded by ``codec`` (default: the metadata's)."""
    meta = predictor.metadata
    codec = codec or meta.finder_codec()

    def find(images: list[np.ndarray]) -> list[list[Found]]:
        crops = [letterbox_input(image, codec.input_size)[0] for image in images]
        x = normalise_input(np.stack(crops), meta.input_color, meta.input_mean, meta.input_std)
        outputs = predictor.heatmaps(x)
        return [
            codec.decode(out, letterbox(image.shape))
            for image, out in zip(images, outputs, strict=True)
        ]

    return find


def finder_finds(finder: Finder, classes: tuple[str, ...]) -> FindBatch:
    """Any :class:`edge.finders.Finder` (Haar, MediaPipe's detectors, the 1-bit finder as
    ``edge.live`` runs it) as a :data:`FindBatch` for a dataset of ``classes``: one frame at
    a time, its finds given the class id of the finder's subject."""
    if finder.subject not in classes:
        raise ModelError(
            f"{finder!r} finds {PLURALS[finder.subject]}; the dataset's labels are "
            f"{', '.join(classes)}"
        )
    class_id = classes.index(finder.subject)
    return lambda images: [
        [replace(f, class_id=class_id) for f in finder.find(image)] for image in images
    ]


def score_finds(
    find: FindBatch,
    dataset: FinderDataset,
    *,
    min_height: float = 1.0 / 6.0,
    iou: float = 0.5,
    batch_size: int = 16,
    limit: int | None = None,
    indices: Sequence[int] | None = None,
    keep: int = 0,
    progress: Callable | None = None,
    by_crop: bool = False,
) -> FinderScore:
    """Recall and precision of ``find`` over ``dataset`` (see the module docstring): the
    records ``indices`` (default: the first ``limit``, else all), ``batch_size`` frames a
    call. Corrupt records are skipped and counted; ``keep`` frames, spread over them, are
    kept for pictures. ``progress`` wraps the iterable of batches (a progress bar).
    ``by_crop``: the same finds also matched on the landmark crops, in ``result.by_crop``."""
    if indices is None:
        indices = range(len(dataset) if limit is None else min(limit, len(dataset)))
    indices = list(indices)
    n = len(indices)
    keep_at = set(np.linspace(0, n - 1, keep).round().astype(int).tolist()) if keep and n else set()
    result = FinderScore(by_crop=FinderScore() if by_crop else None)
    batches = range(0, n, batch_size)
    for start in progress(batches) if progress else batches:
        items: list[tuple[int, FinderSample]] = []
        for k in range(start, min(start + batch_size, n)):
            try:
                items.append((k, dataset.load(indices[k])))
            except CorruptSample as exc:
                dataset.skipped.record(indices[k], str(exc))
                result.skipped += 1
        if not items:
            continue
        finds = find([sample.image for _, sample in items])
        for (k, sample), found in zip(items, finds, strict=True):
            for total, on in ((result, "rect"), (result.by_crop, "crop")):
                if total is not None:
                    total.add(
                        match_frame(
                            found,
                            sample.objects,
                            sample.ignore,
                            sample.image.shape[0],
                            min_height=min_height,
                            iou=iou,
                            on=on,
                        )
                    )
            if k in keep_at:
                result.kept.append((sample, found))
    return result


def score_dataset(
    predictor: Predictor,
    dataset: FinderDataset,
    *,
    codec: FinderCodec | None = None,
    **options,
) -> FinderScore:
    """Recall and precision of ``predictor`` (a finder network, Keras or .tflite) over
    ``dataset`` (:func:`score_finds`, whose ``options`` it takes); ``codec``: the decoding
    (default: the model's metadata's)."""
    check_finder(predictor.metadata, "the model", dataset.classes)
    return score_finds(network_finds(predictor, codec), dataset, **options)


def score_finder(finder: Finder, dataset: FinderDataset, **options) -> FinderScore:
    """Recall and precision of any :class:`edge.finders.Finder` over ``dataset``, frame by
    frame (:func:`score_finds`, whose ``options`` it takes; ``batch_size`` 1 unless given):
    a finder that is no network (OpenCV's Haar cascade) or one run as ``edge.live`` runs it
    is scored exactly as a network is."""
    options.setdefault("batch_size", 1)
    return score_finds(finder_finds(finder, dataset.classes), dataset, **options)


def write_pictures(result: FinderScore, path, height: int = 200):
    """One picture: a row per kept frame, labels (white; ignored: grey) beside the finds
    (green, with their crops in yellow)."""
    import cv2

    from edge.draw import draw_box

    rows = []
    for sample, found in result.kept:
        left, right = sample.image.copy(), sample.image.copy()
        for objects, colour in (
            (sample.objects, (255, 255, 255)),
            (sample.ignore, (128, 128, 128)),
        ):
            for o in objects:
                x0, y0, x1, y1 = (int(round(v)) for v in o.corners)
                cv2.rectangle(left, (x0, y0), (x1, y1), colour, 2)
        for f in found:
            x0, y0, x1, y1 = (int(round(v)) for v in f.corners)
            cv2.rectangle(right, (x0, y0), (x1, y1), (0, 255, 0), 2)
            draw_box(right, f.box, (0, 255, 255))
        pair = np.hstack([left, right])
        scale = height / pair.shape[0]
        rows.append(cv2.resize(pair, (max(1, round(pair.shape[1] * scale)), height)))
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"cannot write {path}")
    return path


def evaluate(options: EvaluateOptions) -> int:
    """``python -m training.evaluate --dataset finder``: the recall/precision table, and with
    ``options.out`` metrics.json and a picture. Reader options ``min_height`` and ``iou``
    (``--option``) change the protocol's bars."""
    from ..config import FinderConfig, evaluation_min_height

    reader = dict(options.options)
    min_height = reader.pop("min_height", None)
    iou = float(reader.pop("iou", FinderConfig().iou))
    split = options.split or "valid"
    dataset = FinderDataset(options.data, split=split, **reader)
    # Faces count from a tenth of the frame, people from a sixth: the bar follows what the
    # labels are of, as configs/*_finder.yaml set it for training's monitor.
    min_height = evaluation_min_height(dataset.classes) if min_height is None else float(min_height)
    predictor = load_predictor(options.model, backend=options.backend, num_threads=options.threads)
    n = len(dataset) if options.limit is None else min(options.limit, len(dataset))
    result = score_dataset(
        predictor,
        dataset,
        min_height=min_height,
        iou=iou,
        batch_size=options.batch_size,
        limit=options.limit,
        keep=options.pictures if options.out is not None else 0,
        progress=options.batch_progress(n),
    )
    title = (
        f"{options.model.name} [{predictor.description}] on finder/{split} "
        f"(subjects taller than {min_height:.3g} of the frame, IoU {iou:g})"
        f"{f', {result.skipped} corrupt skipped' if result.skipped else ''}"
    )
    print(result.table(title))
    if options.out is not None:
        metrics = options.write_metrics(
            {
                "model": str(options.model),
                "runtime": predictor.description,
                "dataset": "finder",
                "data": str(options.data),
                "split": split,
                "min_height": min_height,
                "iou": iou,
                "skipped": result.skipped,
                "values": result.values(),
            }
        )
        picture = write_pictures(result, options.out / "finds.png")
        print(f"wrote {metrics}" + (f" and {picture}" if picture else ""))
    return 0
