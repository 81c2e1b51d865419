"""Training configuration: YAML files in ``configs/`` checked against typed dataclasses.

A config is a nested mapping; every key must be a field below, so a typo such as
``optimizer.learnig_rate`` stops the run at once with the list of valid keys instead of
being silently ignored. Command-line overrides use dotted keys with YAML values::

    python -m training.train --config configs/synthetic_pose.yaml epochs=3 optimizer.name=adam
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge.errors import EdgeError
from edge.finder_codec import NMS_IOU

from .data.augment import AugmentConfig
from .data.teacher_scores import USES, TeacherScoresConfig


class ConfigError(EdgeError):
    """The config file is missing, is not valid YAML, or has a bad key or value."""


@dataclass
class DatasetConfig:
    name: str = "synthetic-pose"  # a key of training.data.DATASETS
    path: str | None = None  # annotation file or dataset root; synthetic sets take none
    train_split: str = "train"
    val_split: str = "val"
    val_path: str | None = None  # the validation set's path, when it is not ``path``
    # The validation set's format, when it is not ``name`` (300w-lp -> aflw2000-3d); it
    # decides the validation protocol, as --dataset does for training.evaluate.
    val_name: str | None = None
    options: dict = field(default_factory=dict)  # reader options for both splits
    train_options: dict = field(default_factory=dict)  # e.g. {size: 2000} for synthetic sets
    val_options: dict = field(default_factory=dict)
    val_limit: int | None = None  # validate on at most this many samples each epoch
    # More training sets mixed into the first one (same skeleton): each entry has ``name``,
    # optional ``path``, ``split`` (default "train"), ``options`` and ``repeat`` (how many
    # times its records are listed, to weight it against the others; default 1), and
    # ``select`` (keep only the records a rule passes, e.g. ``{raised_arm: 90}``; see
    # training.data.select), so a mix can repeat the poses a model finds hard. An entry with
    # no ``name`` is the training set itself again (e.g. ``{select: ..., repeat: 2}``).
    mix: list = field(default_factory=list)


@dataclass
class ModelConfig:
    """Keyword arguments of training.models.build_hourglass (input size and K are added)."""

    num_stacks: int = 1
    depth: int = 4
    features: int = 256
    block: str = "hpm"  # "hpm", "bottleneck" or "wide"
    binary: bool = True
    weight_scale: bool = False  # binary convs times mean|W| per output channel (XNOR-Net's alpha)
    # The authors' released binary model's wiring (all off: the paper's size check).
    binary_skip: bool = False  # the stem blocks' skip 1x1 convs binary
    binary_head: bool = False  # each stack's first head conv binary
    heatmap_activation: str = "linear"  # or "sigmoid" (pair with loss: bce or mse)
    blocks_per_level: int = 1  # blocks in a row at each place of an hourglass level
    # The stem's widths: its 7x7 conv's output, and its first two blocks' (the paper's 64 and
    # 128; the finders narrow them, since a small network does most of its work there).
    stem_channels: int = 64
    stem_block_channels: int = 128


# Evaluation's bar per kind of subject, where no config says: a person counts at a sixth of
# the frame's height; a face at a tenth (a face that tall belongs to a person near the camera,
# whose body is often cut off by the frame).
MIN_HEIGHT = {"person": 1.0 / 6.0, "face": 0.1}


def evaluation_min_height(classes: list[str]) -> float:
    """The protocol's height bar for a finder of ``classes``: the lowest of their bars (a class
    without one gets the person's)."""
    return min(MIN_HEIGHT.get(c, MIN_HEIGHT["person"]) for c in classes)


@dataclass
class FinderConfig:
    """The finders' targets, loss, decoding and evaluation (``task: finder``; see
    edge.finder_codec and training.finder)."""

    # What it finds, in the label tool's class order: ["person"] or ["face"] (checked
    # against the dataset's finder_<split>.json).
    classes: list = field(default_factory=lambda: ["person"])
    sigma_scale: float = 0.1  # heatmap sigma = this x sqrt(box area) / stride, in cells
    min_sigma: float = 0.8  # ... at least this many cells
    regression_weight: float = 1.0  # L1 of the box and crop regressions against the focal loss
    min_score: float = 0.3  # decoding: a find needs this score (recorded in the metadata)
    top_k: int = 20  # decoding: at most this many finds per frame
    # decoding: a find overlapping a better one by more than this IoU is dropped (1: off)
    nms_iou: float = NMS_IOU
    # Evaluation: only subjects at least this tall (a share of the frame's height) count; a
    # find that matches a smaller one, or is smaller itself and matches nothing, is ignored.
    min_height: float = MIN_HEIGHT["person"]  # configs/face_finder.yaml: MIN_HEIGHT["face"]
    iou: float = 0.5  # a find matches a label at this IoU
    # Training: the share of examples made as a 2x2 mosaic of four frames, each letterboxed
    # into a quarter of the input (training.finder.data.mosaic_crop). Most labelled frames
    # hold one person; a mosaic shows four frames' people at once, at half the scale.
    mosaic_prob: float = 0.0


@dataclass
class OptimizerConfig:
    name: str = "rmsprop"  # "rmsprop" (the paper) or "adam" (larq's recommendation)
    learning_rate: float = 2.5e-4
    # [epoch, learning rate] pairs: from that (0-based) epoch on, use that rate.
    schedule: list = field(default_factory=list)


@dataclass
class NormalisationConfig:
    """x_model = (pixel - mean) / std per channel, in ``color`` order (stored in the metadata)."""

    color: str = "RGB"
    mean: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list = field(default_factory=lambda: [255.0, 255.0, 255.0])


@dataclass
class TrainConfig:
    name: str = "run"
    # "landmarks" (heatmaps, MSE), "segmentation" (class logits, softmax cross-entropy;
    # dataset names from training.segmentation.data.PARTS_DATASETS) or "finder" (every person
    # or face in a whole frame: centre heatmaps, focal loss, box and crop regressions;
    # dataset "finder", training.finder)
    task: str = "landmarks"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    input_size: int = 256
    sigma: float = 1.5  # Gaussian target sigma in heatmap cells
    refine: str = "quarter"  # heatmap decoding, see edge.codec
    loss: str = "mse"  # heatmap loss per stack: "mse" or "bce" (needs a sigmoid output)
    # A trained model.keras whose weights start this run, layer by layer where names and
    # shapes agree (e.g. a real-valued twin starting its binary student).
    init_from: str | None = None
    box_margin: float = 1.25  # the readers' crop box margin, recorded in the metadata
    batch_size: int = 10  # global batch, split across replicas
    epochs: int = 100
    steps_per_epoch: int | None = None  # default: training samples // batch_size
    # The saved model's weights are the mean of the last N epochs' checkpoints (stochastic
    # weight averaging). A binary net's latent weights wander around their sign boundaries
    # from epoch to epoch; their mean is a steadier model. 1: the last epoch's weights.
    average_last: int = 1
    # The saved weights are (1 - blend_start) x the trained ones (after average_last) +
    # blend_start x init_from's: a model soup of a short fine-tune and the model it started
    # from, which keeps most of what the start knew while taking up what the fine-tune added.
    # 0: the trained weights alone.
    blend_start: float = 0.0
    val_batch_size: int = 32
    seed: int = 0
    workers: int | None = None  # parallel loader calls; None lets tf.data tune it
    # Batches in a fixed order (the same seed repeats a run exactly, on 1 or N workers) at
    # some input speed; off: a slow record never holds up the ones behind it.
    deterministic: bool = False
    # The weights' and activations' float type. float64 is for checks that two ways of
    # training compute the same thing (1 worker against N): their float32 rounding differs,
    # and training amplifies it step by step by an amount that depends on the CPU's SIMD
    # width; in float64 that rounding sits ~9 orders of magnitude lower. Several times slower.
    precision: str = "float32"
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # The label tool's per-point teacher scores as loss weights or soft targets (issue 24;
    # training.data.teacher_scores). use: none (the default) trains as before.
    teacher_scores: TeacherScoresConfig = field(default_factory=TeacherScoresConfig)
    normalisation: NormalisationConfig = field(default_factory=NormalisationConfig)
    finder: FinderConfig = field(default_factory=FinderConfig)

    def __post_init__(self) -> None:
        # The run folder is runs/<name> by default: a plain name, never a path out of it.
        _check(
            bool(self.name) and self.name not in (".", "..") and not set(self.name) & set("/\\"),
            f"name must be a plain name (no / or \\), got {self.name!r}",
        )
        _check(self.seed >= 0, f"seed must be 0 or more, got {self.seed}")
        _check(
            math.isfinite(self.box_margin) and self.box_margin > 0,
            f"box_margin must be a positive number, got {self.box_margin}",
        )
        _check(
            self.model.features >= 1 and self.model.depth >= 1 and self.model.num_stacks >= 1,
            "model.features, model.depth and model.num_stacks must be at least 1, got "
            f"{self.model.features}, {self.model.depth}, {self.model.num_stacks}",
        )
        _check(
            _positive(self.optimizer.learning_rate),
            f"optimizer.learning_rate must be a positive number, got "
            f"{self.optimizer.learning_rate}",
        )
        _check(
            self.input_size % 4 == 0 and self.input_size >= 32,
            f"input_size must be a multiple of 4 and >= 32, got {self.input_size}",
        )
        _check(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        _check(
            self.task in ("landmarks", "segmentation", "finder"),
            f"task must be landmarks, segmentation or finder, got {self.task!r}",
        )
        _check(
            self.precision in ("float32", "float64"),
            f"precision must be float32 or float64, got {self.precision!r}",
        )
        _check(self.epochs > 0, f"epochs must be positive, got {self.epochs}")
        _check(
            self.steps_per_epoch is None or self.steps_per_epoch > 0,
            f"steps_per_epoch must be positive, got {self.steps_per_epoch}",
        )
        _check(self.sigma > 0, f"sigma must be positive, got {self.sigma}")
        _check(
            1 <= self.average_last <= self.epochs,
            f"average_last must be between 1 and epochs, got {self.average_last}",
        )
        _check(
            0 <= self.blend_start < 1,
            f"blend_start must be at least 0 and below 1, got {self.blend_start}",
        )
        _check(
            not self.blend_start or self.init_from,
            "blend_start needs init_from: the model to blend the trained weights with",
        )
        _check(
            self.optimizer.name in ("rmsprop", "adam"),
            f"optimizer.name must be rmsprop or adam, got {self.optimizer.name!r}",
        )
        _check(
            self.model.block in ("hpm", "bottleneck", "wide"),
            f"model.block must be hpm, bottleneck or wide, got {self.model.block!r}",
        )
        _check(
            self.model.binary or not self.model.weight_scale,
            "model.weight_scale applies to binary convs: set model.binary: true or drop it",
        )
        _check(
            self.model.binary or not (self.model.binary_skip or self.model.binary_head),
            "model.binary_skip and model.binary_head apply to binary networks: set "
            "model.binary: true or drop them",
        )
        _check(
            self.model.heatmap_activation in ("linear", "sigmoid"),
            "model.heatmap_activation must be linear or sigmoid, got "
            f"{self.model.heatmap_activation!r}",
        )
        _check(
            self.model.blocks_per_level >= 1,
            f"model.blocks_per_level must be at least 1, got {self.model.blocks_per_level}",
        )
        _check(
            self.model.stem_channels >= 1
            and self.model.stem_block_channels >= 4
            and self.model.stem_block_channels % 4 == 0,
            "model.stem_channels must be at least 1 and model.stem_block_channels a positive "
            f"multiple of 4, got {self.model.stem_channels} and {self.model.stem_block_channels}",
        )
        self._check_finder()
        self._check_landmark_only()
        _check(self.loss in ("mse", "bce"), f"loss must be mse or bce, got {self.loss!r}")
        _check(
            self.loss != "bce" or self.model.heatmap_activation == "sigmoid",
            "loss: bce needs probabilities: set model.heatmap_activation: sigmoid",
        )
        _check(
            self.normalisation.color in ("RGB", "BGR"),
            f"normalisation.color must be RGB or BGR, got {self.normalisation.color!r}",
        )
        for key in ("mean", "std"):
            v = getattr(self.normalisation, key)
            _check(len(v) == 3, f"normalisation.{key} needs 3 values, got {v!r}")
        for entry in self.optimizer.schedule:
            _check(
                isinstance(entry, (list, tuple)) and len(entry) == 2,
                f"optimizer.schedule entries are [epoch, learning_rate], got {entry!r}",
            )
            epoch, rate = entry
            _check(
                isinstance(epoch, int)
                and not isinstance(epoch, bool)
                and epoch >= 0
                and _positive(rate),
                f"optimizer.schedule entries are [epoch >= 0, learning rate > 0], got {entry!r}",
            )

        self._check_augment()
        self._check_teacher_scores()

    def _check_teacher_scores(self) -> None:
        t = self.teacher_scores
        _check(
            t.use in USES,
            f"teacher_scores.use must be none, weight or target, got {t.use!r}",
        )
        _check(
            math.isfinite(t.floor) and 0 <= t.floor <= 1,
            f"teacher_scores.floor must be between 0 and 1, got {t.floor}",
        )
        _check(_positive(t.power), f"teacher_scores.power must be a positive number, got {t.power}")
        _check(
            not t.on or self.task == "landmarks",
            f"teacher_scores applies to task: landmarks (heatmap targets); task: {self.task} "
            "does not read it: drop it",
        )

    def _check_landmark_only(self) -> None:
        """Keys only the landmark heatmap codec reads: another task would train as if they
        were unset, so a value there is refused rather than silently ignored."""
        if self.task == "landmarks":
            return
        defaults = TrainConfig.__dataclass_fields__
        for key in ("sigma", "refine"):
            _check(
                getattr(self, key) == defaults[key].default,
                f"{key} is for task: landmarks (the heatmap codec); task: {self.task} does "
                "not read it: drop it",
            )
        if self.task == "segmentation":  # the finder checks these itself, with its reason
            _check(
                self.loss == "mse" and self.model.heatmap_activation == "linear",
                "loss and model.heatmap_activation are for heatmaps: task: segmentation "
                "trains class logits with softmax cross-entropy: drop them",
            )

    def _check_finder(self) -> None:
        f = self.finder
        _check(
            bool(f.classes) and all(isinstance(c, str) and c for c in f.classes),
            f"finder.classes must be a list of class names, got {f.classes!r}",
        )
        for key in ("sigma_scale", "min_sigma", "regression_weight"):
            _check(_positive(getattr(f, key)), f"finder.{key} must be a positive number")
        for key in ("min_score", "min_height", "iou", "mosaic_prob"):
            value = getattr(f, key)
            _check(
                math.isfinite(value) and 0 <= value <= 1,
                f"finder.{key} must be between 0 and 1, got {value}",
            )
        _check(f.top_k >= 1, f"finder.top_k must be at least 1, got {f.top_k}")
        _check(
            math.isfinite(f.nms_iou) and 0 < f.nms_iou <= 1,
            f"finder.nms_iou must be in (0, 1] (1: no suppression), got {f.nms_iou}",
        )

    def _check_augment(self) -> None:
        """Values the random draws would turn into NaN pixels or a failure mid-run."""
        a = self.augment
        for key in (
            "flip_prob",
            "rotation_zero_prob",
            "blur_prob",
            "occlusion_prob",
            "wide_rotation_prob",
            "noise_prob",
            "jpeg_prob",
            "dark_prob",
            "background_prob",
            "neighbour_prob",
            "neighbour_front_prob",
        ):
            value = getattr(a, key)
            _check(
                math.isfinite(value) and 0 <= value <= 1,
                f"augment.{key} is a probability (0 to 1), got {value}",
            )
        for key in (
            "scale_sigma",
            "rotation_sigma",
            "rotation_max",
            "shift_sigma",
            "shift_max",
            "blur_sigma_max",
            "occlusion_max",
            "wide_rotation_max",
        ):
            value = getattr(a, key)
            _check(
                math.isfinite(value) and value >= 0,
                f"augment.{key} must be a number of 0 or more, got {value}",
            )
        _check(
            0 < a.scale_min <= a.scale_max,
            "augment.scale_min must be above 0 and at most "
            f"scale_max, got {a.scale_min} and {a.scale_max}",
        )
        _check(
            0 < a.neighbour_scale_min <= a.neighbour_scale_max,
            "augment.neighbour_scale_min must be above 0 and at most neighbour_scale_max, "
            f"got {a.neighbour_scale_min} and {a.neighbour_scale_max}",
        )
        _check(
            0 <= a.colour_min <= a.colour_max,
            "augment.colour_min must be 0 or more and at "
            f"most colour_max, got {a.colour_min} and {a.colour_max}",
        )
        _check(
            math.isfinite(a.noise_sigma_max) and a.noise_sigma_max >= 2,
            f"augment.noise_sigma_max must be at least 2, got {a.noise_sigma_max}",
        )
        _check(
            1 <= a.jpeg_quality_min <= 90,
            f"augment.jpeg_quality_min must be 1 to 90, got {a.jpeg_quality_min}",
        )
        _check(
            0 < a.dark_min <= 0.8,
            f"augment.dark_min must be above 0 and at most 0.8, got {a.dark_min}",
        )
        _check(
            not a.background_prob or self.task == "landmarks",
            "augment.background_prob applies to task: landmarks (their crops keep the person's "
            "mask; the other tasks' targets would not follow the swap)",
        )
        _check(
            not a.neighbour_prob or self.task == "landmarks",
            "augment.neighbour_prob applies to task: landmarks (their crops keep the person's "
            "mask; the other tasks' targets would not know the pasted person)",
        )

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 4

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _positive(value: Any) -> bool:
    """A finite number above 0 (a NaN or an infinite rate trains a NaN model)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!r}; valid keys here: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}" if where else key)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, {} if value is None else value, where)
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads "2.5e-4" (no dot) as a string
        except ValueError:
            pass
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, dict, list) and isinstance(value, hint):
        return value
    if hint is str and isinstance(value, bool):
        raise ConfigError(
            f"config key {where} must be str, got {value!r} (YAML reads yes/no/on/off as "
            "true/false: quote the value)"
        )
    if hint is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    raise ConfigError(
        f"config key {where} must be {getattr(hint, '__name__', hint)}, got {value!r}"
    )


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())  # one line, whatever YAML's message spans


def parse_overrides(overrides: list[str]) -> dict:
    """Turn ``["a.b=1", "c=adam"]`` into a nested mapping with YAML-typed values."""
    tree: dict = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. epochs=5)")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r} has a bad value: {_first_line(exc)}") from None
        except RecursionError:
            raise ConfigError(f"override {item!r} is nested too deeply") from None
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {_first_line(exc)}") from None
    except RecursionError:  # a bomb of nested brackets
        raise ConfigError(f"config {path} is nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return data


def make_config(data: dict, overrides: list[str] | None = None) -> TrainConfig:
    """A checked :class:`TrainConfig` from a mapping plus ``key=value`` overrides."""
    return _build(TrainConfig, _merge(data, parse_overrides(overrides or [])), "")


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    return make_config(read_yaml(path), overrides)


def dump_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
