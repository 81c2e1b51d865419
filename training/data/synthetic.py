"""What the procedural datasets share: seeded splits, option checks, and the preview CLI.

A synthetic sample is a pure function of ``(seed, split, index)``: a generator draws it from
``np.random.default_rng([seed, stream + SPLITS[split], index])``, where each generator has
its own ``stream`` so that two generators never share random numbers.
"""

from __future__ import annotations

import abc
import time

import numpy as np

from edge.cli import ArgumentParser, run_cli
from edge.transform import box_from_points

from . import render
from .base import DatasetError, LandmarkDataset, Sample

SPLITS = {"train": 0, "val": 1, "test": 2}


class SyntheticDataset(LandmarkDataset):
    """Deterministic procedural samples; ``size`` of them per split.

    A subclass sets ``name`` (its registry name), ``stream`` and ``skeleton``, and draws one
    sample in :meth:`render`. The box is square around all the points, enlarged by ``margin``.
    """

    name: str
    stream: int = 0
    margin: float = 1.25

    def __init__(
        self,
        path: str | None = None,
        *,
        split: str = "train",
        size: int | None = None,
        seed: int = 0,
        image_size: int = 256,
        label_occluded: bool = False,
    ) -> None:
        if path is not None:
            raise DatasetError(f"{self.name} takes no path")
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if image_size < 32:
            raise DatasetError(f"image_size must be at least 32, got {image_size}")
        self.split = split
        self.size = int(size if size is not None else (20000 if split == "train" else 1000))
        if self.size <= 0:
            raise DatasetError(f"size must be positive, got {self.size}")
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.label_occluded = label_occluded

    def __len__(self) -> int:
        return self.size

    @abc.abstractmethod
    def render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image (BGR uint8), its points (image pixels) and their visibility."""

    def head_size(self, points: np.ndarray) -> float | None:
        """The PCKh normaliser of a sample; None where the skeleton has no head box."""
        return None

    def load(self, index: int) -> Sample:
        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, self.stream + SPLITS[self.split], index])
        image, points, visible = self.render(rng)
        box = box_from_points(points, margin=self.margin)
        assert box is not None
        return Sample(
            image,
            points,
            visible,
            box,
            head_size=self.head_size(points),
            id=f"{self.name}/{self.split}/{self.seed}/{index}",
        )


def build_preview_parser(dataset_name: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=f"python -m training.data.{dataset_name.replace('-', '_')}",
        description=f"Preview and time the {dataset_name} dataset.",
    )
    parser.add_argument(
        "--preview", metavar="PNG", help="write a contact sheet of samples with landmarks drawn"
    )
    parser.add_argument("--count", type=int, default=16, help="samples on the contact sheet")
    parser.add_argument("--split", default="train", choices=list(SPLITS), help="which split")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--start", type=int, default=0, help="first sample index")
    parser.add_argument("--image-size", type=int, default=256, help="rendered image side in pixels")
    parser.add_argument(
        "--time",
        type=int,
        default=0,
        metavar="N",
        help="render N samples and print the mean time per image",
    )
    return parser


def preview_main(argv: list[str] | None, dataset_name: str) -> int:
    """``python -m training.data.<name>``: a contact sheet of samples and the time per image."""
    from .base import open_dataset

    args = build_preview_parser(dataset_name).parse_args(argv)

    def body() -> None:
        ds = open_dataset(
            dataset_name,
            split=args.split,
            seed=args.seed,
            image_size=args.image_size,
            size=max(args.start + args.count, args.start + args.time, 1),
        )
        if args.preview:
            samples = [ds.load(args.start + i) for i in range(args.count)]
            out = render.contact_sheet(samples, ds.skeleton, args.preview)
            print(f"wrote {out}")
        if args.time:
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(args.time):
                ds.load(args.start + i)
            wall = (time.perf_counter() - t0) / args.time * 1e3
            cpu = (time.process_time() - c0) / args.time * 1e3
            print(f"{wall:.2f} ms per {args.image_size}x{args.image_size} image ({cpu:.2f} ms CPU)")

    return run_cli(body, errors=(OSError,))  # DatasetError is an EdgeError
