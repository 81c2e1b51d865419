"""Label sets for part segmentation: class names, overlay colours and left/right pairs.

The segmentation counterpart of :mod:`edge.skeletons`. A model's metadata records its class
names and colours, so the runtime needs nothing from here; training, the readers and the
converter use these definitions.

``face-parts-11`` is the Helen face-parsing set (Smith et al., CVPR 2013), in the order of
its ``_lbl00`` ... ``_lbl10`` files. "Left" and "right" are the subject's own sides, as in
:mod:`edge.skeletons` (the subject's left eye is on the image's right for a face looking at
the camera); a horizontal flip swaps each pair.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartLabels:
    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]  # RGB overlay colour per class
    flip_pairs: tuple[tuple[int, int], ...]  # classes that swap under a horizontal flip
    # The classes whose pixels define the subject's crop box (the face without hair): the
    # square around them, times the model's box margin, is what training crops and what
    # the device's tracker cuts from the previous frame's class map.
    box_classes: tuple[int, ...]
    # The classes of Helen's "overall" F1 (brows, eyes, nose, mouth parts), pooled.
    overall: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def flip_permutation(self) -> list[int]:
        """perm[c] = the class that c becomes in the mirrored image."""
        perm = list(range(self.num_classes))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


FACE_PARTS = PartLabels(
    name="face-parts-11",
    classes=(
        "background",
        "skin",
        "left_brow",
        "right_brow",
        "left_eye",
        "right_eye",
        "nose",
        "upper_lip",
        "inner_mouth",
        "lower_lip",
        "hair",
    ),
    colors=(
        (0, 0, 0),
        (255, 204, 153),
        (153, 51, 0),
        (204, 102, 0),
        (0, 102, 255),
        (0, 204, 255),
        (255, 255, 0),
        (255, 0, 102),
        (102, 0, 51),
        (204, 0, 204),
        (102, 51, 0),
    ),
    flip_pairs=((2, 3), (4, 5)),
    box_classes=(1, 2, 3, 4, 5, 6, 7, 8, 9),
    overall=(2, 3, 4, 5, 6, 7, 8, 9),
)

PART_LABELS: dict[str, PartLabels] = {FACE_PARTS.name: FACE_PARTS}


def get_part_labels(name: str) -> PartLabels:
    try:
        return PART_LABELS[name]
    except KeyError:
        raise KeyError(
            f"unknown part label set {name!r}; known: {', '.join(PART_LABELS)}"
        ) from None
