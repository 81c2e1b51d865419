"""What the command-line tools share: one-line errors, readable ``--help`` and the common flags.

Every failure of a CLI, a bad flag included, is one ``error: ...`` line on stderr and exit
status 2, never a usage dump or a traceback (:func:`run_cli`). ``--model`` takes a path or
``pose``/``face`` for the bundled models (:func:`resolve_model`), ``--backend`` offers the
backend registry's names and ``--threads`` defaults to :data:`DEFAULT_THREADS` everywhere;
edge.live's flags for several people are declared once (:func:`add_several_people_arguments`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import NoReturn

from .backends.base import DEFAULT_THREADS
from .errors import EdgeError, ModelError

MODELS_DIR = Path(__file__).resolve().parent / "models"
# Names --model accepts for the models in edge/models: "pose" (MPII-16, the default) and
# "face" are the demo models; "pose-coco17" is the more accurate COCO-17 pose model, opt-in
# while it misses the drawn demo figure's bar (edge/models/README.md).
BUNDLED = {
    "pose": MODELS_DIR / "pose.tflite",
    "pose-coco17": MODELS_DIR / "pose_coco17.tflite",
    "face": MODELS_DIR / "face.tflite",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it says something (not None, not an off switch) and
    the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` that reports a bad command line in one line and
    shows defaults in ``--help`` the same way in every tool."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


def run_cli(
    body: Callable[[], int | None],
    *,
    errors: tuple[type[BaseException], ...] = (),
    interrupted: str | Callable[[], str] = "interrupted",
) -> int:
    """Run a CLI's work and turn its failures into an exit status: :class:`EdgeError` (and
    ``errors``) print ``error: <message>`` and give 2; Ctrl-C prints ``error: <interrupted>``
    and gives 130. ``body`` returns the status (None: 0)."""
    try:
        status = body()
    except (EdgeError, *errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        message = interrupted() if callable(interrupted) else interrupted
        print(f"error: {message}", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


def resolve_model(spec: str | Path | None) -> Path:
    """A model path from ``--model``: a file, or a name of :data:`BUNDLED` (``pose``,
    ``pose-coco17``, ``face``) for the bundled models."""
    if spec is None:
        spec = "pose"
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if str(spec) in BUNDLED:
        bundled = BUNDLED[str(spec)]
        if bundled.is_file():
            return bundled
        raise ModelError(
            f"the bundled {spec} model {bundled} is not installed; pass --model PATH.tflite "
            "(convert one with `python -m converters.convert`)"
        )
    raise ModelError(f"model file not found: {path}")


def add_model_argument(
    parser,
    *,
    required: bool = False,
    what: str = "a .tflite from `python -m converters.convert`",
    default_help: str | None = None,
):
    """``--model PATH|pose|pose-coco17|face``; the value stays a string:
    :func:`resolve_model` finds it."""
    help_text = (
        f"{what}, or 'pose'/'face' for the bundled demo models ('pose-coco17': the more "
        "accurate COCO-17 pose model)"
    )
    if not required:
        help_text += f" (default: {default_help or 'the bundled pose model'})"
    return parser.add_argument(
        "--model",
        required=required,
        default=None,
        metavar="PATH|pose|pose-coco17|face",
        help=help_text,
    )


def add_backend_argument(parser, *, flag: str = "--backend"):
    """``--backend`` with the registry's names (``auto`` first)."""
    from .backends import backend_names

    return parser.add_argument(
        flag,
        choices=backend_names(),
        default="auto",
        help="inference backend (see edge.backends): auto picks the "
        "fastest installed one that runs the model",
    )


def add_threads_argument(
    parser,
    *,
    default: int = DEFAULT_THREADS,
    cpus: int | None = None,
    flag: str = "--threads",
    **kwargs,
) -> argparse.Action:
    """``--threads N`` (or another ``flag`` with the same rule), from 1 to :func:`max_threads`,
    the same default in every tool. ``cpus``: the CPUs of the machine the threads will run on,
    when that is another one (edge.deploy's target); None: this machine."""
    kwargs.setdefault("help", "interpreter threads")
    return parser.add_argument(
        flag,
        type=thread_count if cpus is None else threads_for(cpus),
        default=default,
        metavar="N",
        **kwargs,
    )


# More interpreter threads than this per CPU only make every thread wait (each runtime also
# starts helpers of its own: 64 asked for 128 threads on a 2-core machine).
THREADS_PER_CPU = 4


def int_in_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {text!r}")
        return value

    parse.__name__ = "int"
    return parse


positive_int = int_in_range(1)
non_negative_int = int_in_range(0)


def max_threads(cpus: int | None = None) -> int:
    """The most ``--threads`` any tool accepts: :data:`THREADS_PER_CPU` x the CPUs (this
    machine's ``os.cpu_count()`` unless given)."""
    return THREADS_PER_CPU * (cpus or os.cpu_count() or 1)


def threads_for(cpus: int | None = None) -> Callable[[str], int]:
    """An argparse type for ``--threads`` on a machine with ``cpus`` CPUs (None: this one)."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > max_threads(cpus):
            where = "here" if cpus is None else "there"
            raise argparse.ArgumentTypeError(
                f"must be at most {max_threads(cpus)} ({THREADS_PER_CPU} per CPU, "
                f"{cpus or os.cpu_count() or 1} {where}), got {text!r}"
            )
        return value

    parse.__name__ = "int"
    return parse


thread_count = threads_for()  # this machine's CPUs


def float_in_range(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
) -> Callable[[str], float]:
    """An argparse type: a finite number (never NaN or an infinity, which every comparison
    would let through) from ``low`` to ``high``; ``low_open``: ``low`` itself is refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if low is not None and (value <= low if low_open else value < low):
            bound = "above" if low_open else "at least"
            raise argparse.ArgumentTypeError(f"must be {bound} {low:g}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse


finite_float = float_in_range()
positive_float = float_in_range(0.0, low_open=True)
non_negative_float = float_in_range(0.0)
unit_float = float_in_range(0.0, 1.0)  # scores and fractions


def score_or_auto(text: str) -> float | str:
    """An argparse type for edge.live --lost-below (and edge.deploy's): ``auto`` (the cut the
    model records, :func:`edge.tracking.lost_below_of`) or a score of at least 0."""
    if text == "auto":
        return text
    try:
        return non_negative_float(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or auto: the model's own cut)") from None


score_or_auto.__name__ = "score"
# edge.live --keep-mb, and edge.deploy's, which the service passes on: at least one megabyte.
keep_mb_type = float_in_range(1.0)


def add_several_people_arguments(
    parser,
    *,
    unset: Collection[str] = (),
    counts: bool = True,
    find_and_drop: bool = True,
    more_help: Mapping[str, str] | None = None,
) -> None:
    """edge.live's flags for several people (issue 27), the same in every tool that takes or
    passes them on: with ``counts``, ``--max-people`` and ``--max-faces`` (1 to
    :data:`edge.multitrack.MAX_TRACKS`); ``--person-finder`` and ``--face-detector``; with
    ``find_and_drop``, ``--find-every`` and ``--drop-after``.

    ``unset``: the dests (``"max_people"``, ``"person_finder"``, ...) whose default is None, so
    that the tool can tell a flag not given (edge.deploy, edge.doctor), rather than edge.live's
    default, which the help still names. ``more_help``: a tool's own words after a flag's help,
    by dest."""
    from .host import TEACHERS_ENV
    from .multitrack import DEFAULT_DROP_AFTER, DEFAULT_FIND_EVERY, MAX_TRACKS
    from .tracking import AUTO_FINDER, DEFAULT_FACE_DETECTOR

    cache = f"the teacher cache (${TEACHERS_ENV} or ~/.cache/binland/teachers)"
    several = "with --max-people or --max-faces above 1"
    count = dict(type=int_in_range(1, MAX_TRACKS), default=1, metavar="N")
    flags: dict[str, dict] = {
        "max_people": dict(
            count,
            help=f"pose models: follow up to N people (N up to {MAX_TRACKS}), each with its own "
            "ID; each costs one inference a frame",
        ),
        "max_faces": dict(
            count,
            help=f"face landmark models: follow up to N faces (N up to {MAX_TRACKS}), found with "
            "--face-detector, as --max-people does people",
        ),
        "person_finder": dict(
            default=AUTO_FINDER,
            metavar="blazepose|none|auto|PATH",
            help="how pose models find people (edge.finders): blazepose: MediaPipe's person "
            f"detector, pose_detection.tflite, from {cache}; PATH: that file elsewhere, or our "
            "1-bit finder (a .tflite converted from a training.finder run); none: the whole "
            f"frame and the search boxes; {AUTO_FINDER}: our bundled 1-bit finder "
            "(edge/models/person_finder.tflite) with --max-people 1, blazepose above (the "
            "bundled finder where blazepose's file is not in the teacher cache)",
        ),
        "face_detector": dict(
            default=DEFAULT_FACE_DETECTOR,
            metavar="haar|blazeface|none|auto|PATH",
            help="how face models find faces when not tracking, and newcomers with --max-faces "
            "above 1 (edge.finders): haar: OpenCV's Haar cascade; blazeface: MediaPipe's "
            f"short-range BlazeFace from {cache}; PATH: a short-range BlazeFace .tflite "
            "(face_detection_short_range.tflite) or our 1-bit face finder; none: the full "
            f"frame; {AUTO_FINDER}: our bundled 1-bit face finder "
            "(edge/models/face_finder.tflite), haar where it is not installed",
        ),
    }
    if not counts:
        del flags["max_people"], flags["max_faces"]
    if find_and_drop:
        flags["find_every"] = dict(
            type=positive_int,
            default=DEFAULT_FIND_EVERY,
            metavar="K",
            help=f"{several}: run the finder every K frames to pick up newcomers; it also runs "
            "every frame while a track is lost (to find them again) or nobody is tracked, and "
            "never while N are tracked",
        )
        flags["drop_after"] = dict(
            type=non_negative_float,
            default=DEFAULT_DROP_AFTER,
            metavar="SECONDS",
            help=f"{several}: forget a person lost for this many seconds; until then the finder "
            "may pick them up again under the same ID. IDs are never reused",
        )
    unknown = (set(unset) | set(more_help or {})) - set(flags)
    if unknown:
        raise ValueError(f"not a several-people flag: {', '.join(sorted(unknown))}")
    for dest, kwargs in flags.items():
        default = kwargs["default"]
        # Always said here: an unset flag's default is edge.live's, which argparse cannot show.
        shown = f"{default:g}" if isinstance(default, float) else default
        kwargs["help"] += (more_help or {}).get(dest, "") + f" (default: {shown})"
        if dest in unset:
            kwargs["default"] = None
        parser.add_argument("--" + dest.replace("_", "-"), **kwargs)
