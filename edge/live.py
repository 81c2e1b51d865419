"""Live landmarks (or face parts) on a camera, video, images or the demo clip: ``python -m edge.live``.

    python -m edge.live --source demo --no-display --output demo.mp4
    python -m edge.live --model face --source 0 --serve 0.0.0.0:8080
    python -m edge.live --model pose.tflite --source clip.mp4 --jsonl clip.jsonl --no-display
    python -m edge.live --source clip.mp4 --max-people 4 --jsonl people.jsonl --no-display

A thin CLI over the model's own per-frame chain (:func:`edge.tasks.open_model`, then
``model.video_pipeline``): per frame the source gives a BGR frame, the pipeline crops (the
tracker's box: the previous frame's landmarks, else the full frame or a face detector),
infers, decodes, tracks and (landmarks) smooths, then draws the overlay for the window,
video and MJPEG stream and makes the JSONL record; the loop never asks which task it runs.
A landmark model runs :class:`edge.pipeline.LandmarkPipeline`, or with ``--max-people N``
(``--max-faces N``) above 1 :class:`edge.multipipeline.MultiLandmarkPipeline`: a finder
(:mod:`edge.finders`) picks people up, each is tracked under its own ID
(:mod:`edge.multitrack`), drawn in its own colour and listed in the JSONL; a segmentation model
(``--model faceparts.tflite``) :class:`edge.segmentation.SegmentationPipeline`: tracked like
a face model, the coloured class map as overlay, per-class pixel areas (``--rle``: the map
itself) in the JSONL. Ctrl-C (SIGINT), SIGTERM or SIGHUP (a closed ssh session) stops after the current
frame with every file complete; a second one stops at once. Recordings never replace earlier
ones and survive a kill but for the last video segment (see :mod:`edge.outputs`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .access import STREAM_USER, TOKEN_ENV
from .cli import (
    BUNDLED,
    ArgumentParser,
    add_backend_argument,
    add_model_argument,
    add_several_people_arguments,
    add_threads_argument,
    int_in_range,
    keep_mb_type,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    resolve_model,
    run_cli,
    score_or_auto,
)
from .errors import EdgeError, ModelError, OutputError, SourceError
from .multipipeline import STAGES as MULTI_STAGES
from .multitrack import MultiTracker, multi_tracker_for
from .pipeline import STAGES as PIPELINE_STAGES
from .pipeline import FrameResult, LandmarkPipeline
from .smoothing import OneEuroFilter
from .sources import MAX_FRAME_PIXELS, open_source
from .timing import RateMeter, StageTimes
from .tracking import (
    CROP_MIN_SCORE,
    DEFAULT_LOST_BELOW,
    LandmarkTracker,
    subject_of,
    tracker_for,
)

if TYPE_CHECKING:
    from .metadata import LandmarkMetadata
    from .network import VideoPipeline

__all__ = ["BUNDLED", "FrameResult", "LivePipeline", "build_parser", "main", "resolve_model"]

# The name edge.live's pipeline had before it moved to edge.pipeline.
LivePipeline = LandmarkPipeline
# Every stage a summary may list, in order: the finder's only with several subjects.
STAGES = ("capture", *dict.fromkeys((*MULTI_STAGES, *PIPELINE_STAGES)), "output", "total")
# The largest model input edge.live loads, per side. The runtime's buffers grow with the input
# area: a 175 KB model with a 2048x2048 input took 0.7 to 2.4 GB, more than a Pi may have.
MAX_INPUT_SIDE = 1024
# Viewers of the stream at once: each one holds a thread and a socket.
MAX_CLIENTS = 64
DEFAULT_SEGMENT_SECONDS = 30.0


class _StopFlag:
    """First SIGINT, SIGTERM or SIGHUP asks the loop to stop after this frame; a second one
    interrupts. SIGHUP's default would end the process at once (an ssh session closing),
    leaving the video segment being written unplayable."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, _frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _open_terminal(serve: str):
    """The controlling terminal, where a made-up token may be shown; a service has none."""
    try:
        return open("/dev/tty", "w", encoding="utf-8")  # noqa: SIM115 - closed with the outputs
    except OSError:
        raise EdgeError(
            f"--serve {serve} is reachable from other machines and needs a token: "
            f"set {TOKEN_ENV} or --token-file (edge.deploy sets one up); there is "
            "no terminal to show a made-up one on"
        ) from None


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    if w * h > MAX_FRAME_PIXELS:
        raise argparse.ArgumentTypeError(
            f"{w}x{h} is over the frame size limit of {MAX_FRAME_PIXELS} pixels (7680x4320 fits)"
        )
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m edge.live",
        description="Run a landmark model on a live camera, a video, images or the demo clip, "
        "with tracking, smoothing, an overlay and optional video/JSONL/MJPEG outputs.",
    )
    add_model_argument(p)
    p.add_argument(
        "--source",
        default=None,
        help="'picamera2', a camera index (0), a video file, an image, a folder or "
        "glob of images, or 'demo' (a built-in synthetic clip); default: the Pi "
        "camera if picamera2 is installed, else camera 0",
    )
    p.add_argument(
        "--size",
        type=_size,
        default=(640, 480),
        metavar="WxH",
        help="capture size for cameras and the demo clip (default: 640x480)",
    )
    p.add_argument("--loop", action="store_true", help="replay videos, images and the demo")
    p.add_argument(
        "--max-frames", type=positive_int, default=None, metavar="N", help="stop after N frames"
    )
    run = p.add_argument_group("inference")
    add_backend_argument(run)
    add_threads_argument(run)
    run.add_argument(
        "--flip-test",
        action="store_true",
        help="landmark models: also run each crop mirrored and average the two (two "
        "inferences a crop, for a point or so of accuracy: docs/measured.md); the skeleton "
        "needs left/right pairs",
    )
    track = p.add_argument_group("tracking and smoothing")
    track.add_argument(
        "--min-score",
        type=non_negative_float,
        default=0.3,
        help="landmarks scoring below this are not trusted: not drawn filled, held by the smoother",
    )
    track.add_argument(
        "--crop-min-score",
        type=non_negative_float,
        default=CROP_MIN_SCORE,
        help="landmarks scoring at least this place the next frame's crop (and, with "
        "several people, each track's box); lower keeps the whole body in the crop when "
        "some landmarks are unsure",
    )
    track.add_argument(
        "--reacquire",
        choices=("near", "best"),
        default="near",
        help="one subject, when the track is lost: start again from the find overlapping the "
        "last crop most (near: the subject rarely jumps across the frame), else the finder's "
        "best; or always the finder's best (best)",
    )
    track.add_argument(
        "--lost-below",
        type=score_or_auto,
        default="auto",
        metavar="auto|S",
        help="mean landmark score below which the track is lost and the next frame starts "
        "from the person finder or the full frame (pose) or the face detector (face); auto: "
        "the cut the model records (training.evaluate --calibrate-tracking measures it), "
        f"else {DEFAULT_LOST_BELOW:g}",
    )
    add_several_people_arguments(
        track,
        more_help={
            "max_people": ". Above 1 each also has its own colour and entry in the JSONL "
            "record's 'people' list; 1 follows one person (the whole frame and --probe-every's "
            "search boxes when lost) with the single-person JSONL record",
        },
    )
    track.add_argument(
        "--probe-every",
        type=non_negative_int,
        default=4,
        metavar="N",
        help="pose models: every N frames also try one of a few fixed search "
        "boxes (whole frame, left/middle/right squares) and keep it if it "
        "scores higher than the track; recovers a track stuck on part of the "
        "subject at the cost of 1/N more inference; 0 turns it off",
    )
    track.add_argument("--no-smoothing", action="store_true", help="turn the One Euro filter off")
    track.add_argument(
        "--min-cutoff",
        type=positive_float,
        default=0.05,
        help="One Euro minimum cutoff (Hz): lower removes more jitter at rest",
    )
    track.add_argument(
        "--beta",
        type=non_negative_float,
        default=80.0,
        help="One Euro speed coefficient (per object size per second): higher "
        "follows fast motion with less lag",
    )
    track.add_argument(
        "--d-cutoff",
        type=positive_float,
        default=1.0,
        help="One Euro cutoff (Hz) for the speed estimate",
    )
    track.add_argument(
        "--low-confidence",
        choices=("hold", "hide"),
        default="hold",
        help="what the smoother does with landmarks below --min-score: keep "
        "their last position, or hide them",
    )
    out = p.add_argument_group("outputs")
    out.add_argument(
        "--no-display",
        action="store_true",
        help="never open a window (one opens only when $DISPLAY is set)",
    )
    out.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="OUT.mp4",
        help="write the annotated video (mp4v) in segments of --segment seconds: OUT.mp4, "
        "then OUT.0001.mp4, OUT.0002.mp4, ... Never overwrites: when OUT.mp4 exists, the run "
        "starts at the next free number. A kill or power cut loses only the segment being "
        "written",
    )
    out.add_argument(
        "--jsonl",
        type=Path,
        default=None,
        metavar="OUT.jsonl",
        help="write one JSON record per frame (index, timestamp, crop box, landmarks with "
        "names and scores, stage latencies; with --max-people or --max-faces above 1 a list "
        "'people' of id, box, score and landmarks instead) to a new file: OUT.jsonl, or when "
        "that exists the next free OUT.NNNN.jsonl (never appended to, never overwritten)",
    )
    out.add_argument(
        "--segment",
        type=non_negative_float,
        default=DEFAULT_SEGMENT_SECONDS,
        metavar="SECONDS",
        help="start a new video file every SECONDS of video (at the source's frame rate); 0: "
        "one file per run, which a kill leaves unplayable",
    )
    out.add_argument(
        "--keep-mb",
        type=keep_mb_type,
        default=None,
        metavar="MB",
        help="keep the recordings of --output and --jsonl (this run's and earlier ones) under "
        "MB megabytes by deleting the oldest files; the JSONL then also starts a new file with "
        "every video segment. For a service that records around the clock",
    )
    out.add_argument(
        "--serve",
        default=None,
        metavar="[HOST:]PORT",
        help="serve the overlay as an MJPEG stream with a small web page; HOST "
        "(an IPv6 address in brackets: [::1]:8080) defaults to 127.0.0.1, open "
        "to this machine's users only (see --allow-host). Any other "
        "address (0.0.0.0 reaches it from other machines) needs a token, taken "
        f"from ${TOKEN_ENV} or --token-file: open http://HOST:PORT/?token=TOKEN, "
        f"or the page and sign in with user {STREAM_USER} and the token as "
        "password. With neither set, edge.live makes one up and prints the URL "
        "to open on the terminal (not on stdout or stderr); with no terminal "
        "(a service) it refuses to start",
    )
    out.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"read the stream's token from the first line of PATH, a regular file of at most "
        f"4 KB, instead of ${TOKEN_ENV} (never pass a token itself on the command line: ps "
        "shows it to every user)",
    )
    out.add_argument(
        "--allow-host",
        action="append",
        default=None,
        metavar="NAME",
        help="a stream on 127.0.0.1 or [::1] answers only requests addressed to "
        "localhost or an IP address (others get 403: a web page could rebind its "
        "own name to 127.0.0.1 and read the camera); this adds NAME, e.g. one an "
        "ssh tunnel or a local proxy uses. Repeatable",
    )
    out.add_argument(
        "--max-clients",
        type=int_in_range(1, MAX_CLIENTS),
        default=4,
        metavar="N",
        help=f"at most N viewers (N up to {MAX_CLIENTS}) of the stream at once; the next one "
        "gets 503. A viewer that stops reading misses frames and never slows the camera",
    )
    out.add_argument(
        "--rle",
        action="store_true",
        help="segmentation models: also write each frame's class map, run-length "
        "encoded (row-major [class, run, class, run, ...]), into the JSONL",
    )
    out.add_argument("--show-box", action="store_true", help="draw the crop box")
    out.add_argument("--quiet", action="store_true", help="print only the final summary")
    return p


def _summary(frames: int, wall: float, times: StageTimes, stopped: str) -> str:
    fps = frames / wall if wall > 0 and frames else 0.0
    lines = [
        f"{frames} frames in {wall:.2f} s, mean {fps:.1f} FPS ({stopped})",
        times.table([s for s in STAGES if s in times]),
    ]
    return "\n".join(lines)


def _check_counts(args: argparse.Namespace, meta: LandmarkMetadata) -> int:
    """How many subjects to follow; a count flag for the other kind of model is refused."""
    counts = {"person": args.max_people, "face": args.max_faces}
    flags = {"person": "--max-people", "face": "--max-faces"}
    subject = subject_of(meta)
    other = "face" if subject == "person" else "person"
    if counts[other] != 1:
        kind = "pose" if other == "person" else "face"
        raise EdgeError(
            f"{flags[other]} is for {kind} models; this {meta.task} model takes {flags[subject]}"
        )
    return counts[subject]


def _tracker(args: argparse.Namespace, meta: LandmarkMetadata) -> LandmarkTracker | MultiTracker:
    """One subject's tracker, or with --max-people / --max-faces above 1 the tracker of
    several, each with its finder (loaded here: the runtime may log to stderr)."""
    count = _check_counts(args, meta)
    if count == 1:
        return tracker_for(
            meta,
            face_detector=args.face_detector,
            person_finder=args.person_finder,
            min_score=args.crop_min_score,
            lost_below=args.lost_below,
            probe_every=args.probe_every,
            reacquire=args.reacquire,
        )
    return multi_tracker_for(
        meta,
        count,
        face_detector=args.face_detector,
        person_finder=args.person_finder,
        min_score=args.crop_min_score,
        lost_below=args.lost_below,
        find_every=args.find_every,
        drop_after=args.drop_after,
    )


def _check_flip(args: argparse.Namespace, meta: LandmarkMetadata, path: Path) -> None:
    """--flip-test runs landmark models only, whose skeleton has left/right pairs."""
    from .model import LandmarkModel
    from .tasks import model_class

    if not args.flip_test:
        return
    if model_class(meta.task) is not LandmarkModel:
        raise EdgeError(f"--flip-test is for landmark models; {path.name} is a {meta.task} model")
    if not meta.flip_pairs:
        raise EdgeError(f"--flip-test needs left/right landmark pairs; {meta.skeleton} has none")


def _check_model_input(meta, path: Path) -> None:
    w, h = meta.input_size
    if max(w, h) > MAX_INPUT_SIDE:
        raise ModelError(
            f"{path.name}: its input is {w}x{h}; edge.live loads models of at most "
            f"{MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} (the runtime's memory grows with the input area)"
        )


def _saved(outputs: list) -> str:
    """What a run's recordings hold, for the one error line of a failed write."""
    saved = [text for text in (o.describe() for o in outputs) if text]
    return "saved: " + ", ".join(saved) if saved else "nothing saved"


class Outputs:
    """Where each frame goes: the video, the JSONL log, the MJPEG stream and the window, and
    what must be closed at the end (in ``closers``, also on an error while opening)."""

    def __init__(self) -> None:
        self.video = self.jsonl = self.server = self.display = None
        self.closers: list = []
        self.recordings: list = []  # the video and JSONL outputs: what a failed write saved

    def add(self, output, *, recording: bool = False):
        self.closers.append(output)
        if recording:
            self.recordings.append(output)
        return output

    @property
    def need_overlay(self) -> bool:
        return any(o is not None for o in (self.video, self.server, self.display))

    def write(
        self,
        pipeline: VideoPipeline,
        result,
        times: StageTimes,
        *,
        started: float,
        fps: float,
        show_box: bool,
    ) -> bool:
        """One frame (read at ``started``) to every output: the pipeline draws and records
        it, whatever its task. False when the window was closed."""
        open_window = True
        with times.stage("output"):
            if self.need_overlay:
                overlay = pipeline.annotate(result, fps=fps, show_box=show_box)
                if self.video is not None:
                    self.video.write(overlay)
                if self.server is not None:
                    self.server.publish(overlay)
                if self.display is not None:
                    open_window = self.display.show(overlay)
        times.add("total", time.perf_counter() - started)
        if self.jsonl is not None:
            latency = {s: round(v * 1e3, 3) for s, v in times.current.items()}
            self.jsonl.write(pipeline.record(result, latency))
        return open_window


def _open_outputs(
    args: argparse.Namespace, meta: LandmarkMetadata, fps: float, say, outputs: Outputs
) -> list[str]:
    """Open the recordings and the stream into ``outputs`` (before the model loads, so their
    errors come first and alone); returns what to tell the user about them."""
    said: list[str] = []
    from .access import is_loopback, new_token, read_token, stream_url
    from .outputs import DiskBudget, JsonlOutput, MjpegServer, VideoOutput, parse_host_port

    segment = max(1, round(args.segment * fps)) if args.segment > 0 else None
    budget = None
    if args.keep_mb is not None:
        series = [p for p in (args.output, args.jsonl) if p is not None]
        budget = DiskBudget(series, int(args.keep_mb * 1e6), say=say)
    if args.output is not None:
        outputs.video = outputs.add(
            VideoOutput(args.output, fps=fps, segment_frames=segment, budget=budget),
            recording=True,
        )
        every = f", a new file every {args.segment:g} s" if segment else ""
        said.append(f"video: {outputs.video.first}{every}")
    if args.jsonl is not None:
        # Under a budget the JSONL is cut where the video is, so old files can go.
        cut = segment if budget is not None else None
        outputs.jsonl = outputs.add(
            JsonlOutput(args.jsonl, budget=budget, segment_records=cut), recording=True
        )
        said.append(f"landmarks: {outputs.jsonl.current}")
    if args.serve is not None:
        host, port = parse_host_port(args.serve)
        token = read_token(args.token_file)
        made_up = token is None and not is_loopback(host)
        if made_up:
            terminal = outputs.add(_open_terminal(args.serve))
            token = new_token()
        server = outputs.add(
            MjpegServer(
                host,
                port,
                title=f"{meta.model_name} ({meta.skeleton})",
                token=token,
                max_clients=args.max_clients,
                allowed_hosts=args.allow_host or (),
            )
        )
        outputs.server = server
        if made_up:
            # The terminal only: stdout and stderr may be a log that outlives this run.
            print(
                f"edge.live: the stream's token is made up for this run (set {TOKEN_ENV} "
                f"to keep one); open:\n  {stream_url(server.host, server.port, token)}",
                file=terminal,
                flush=True,
            )
        del token
        said.append(
            f"serving {server.url}"
            + (
                f" (token required: ?token=TOKEN, or user {STREAM_USER} and the token as password)"
                if server.protected
                else ""
            )
        )
    return said


def pipeline_from_args(
    args: argparse.Namespace, model_path: Path, meta: LandmarkMetadata, say=lambda *_: None
):
    """The per-frame chain edge.live runs for its parsed flags ``args``: the tracker (with
    its finder) and the model's pipeline, built here and nowhere else (benchmarks.tracked
    runs clips through it). The finder and the model load now; the runtime may log."""
    return _open_pipeline(args, model_path, _tracker(args, meta), say)


def _open_pipeline(
    args: argparse.Namespace, model_path: Path, tracker: LandmarkTracker | MultiTracker, say
):
    """The model (its task's class) and its per-frame chain for a video."""
    from .tasks import open_model

    options = {"flip_test": True} if args.flip_test else {}  # (landmark models: _check_flip)
    model = open_model(model_path, backend=args.backend, num_threads=args.threads, **options)
    meta = model.metadata
    say(
        f"model: {model_path.name} ({meta.skeleton}, {model.output_description}, "
        f"input {meta.input_size[0]}x{meta.input_size[1]}) on "
        f"{model.backend_description}, {model.num_threads} threads"
    )
    if isinstance(tracker, MultiTracker):
        # Which finder "auto" picked (edge.tracking.finder_spec) is worth a line: it decides
        # how fast newcomers are found.
        finder = tracker.finder  # an edge.finders.Finder: multi_tracker_for made it
        where = f" ({finder.path.name})" if finder.path is not None else ""
        say(f"finder: {finder.name}{where}, following up to {tracker.max_tracks}")
    smoother = None
    if not args.no_smoothing:
        smoother = OneEuroFilter(
            min_cutoff=args.min_cutoff,
            beta=args.beta,
            d_cutoff=args.d_cutoff,
            min_score=args.min_score,
            hide=args.low_confidence == "hide",
        )
    return model.video_pipeline(tracker, smoother=smoother, min_score=args.min_score, rle=args.rle)


@dataclass
class _Progress:
    """How far a run got and why it stopped."""

    frames: int = 0
    stopped: str = "end of source"
    exit_code: int = 0
    failure: OutputError | None = None


def _loop(
    args,
    source,
    pipeline: VideoPipeline,
    outputs: Outputs,
    times: StageTimes,
    stop: _StopFlag,
    progress: _Progress,
) -> None:
    """Frames from ``source`` through ``pipeline`` to ``outputs`` until the source ends, a
    limit or a signal stops it, or a write fails (which keeps what the files hold)."""
    rate = RateMeter()
    while not stop.requested:
        if args.max_frames is not None and progress.frames >= args.max_frames:
            progress.stopped = f"--max-frames {args.max_frames}"
            return
        times.new_frame()
        t0 = time.perf_counter()
        try:
            frame = source.read()
            if frame is not None:
                _check_frame_size(frame)
        except SourceError as exc:
            if progress.frames == 0:
                raise
            # A camera unplugged or a broken file mid-run: keep what was recorded.
            print(f"error: {exc}", file=sys.stderr)
            progress.stopped, progress.exit_code = "source failed", 1
            return
        if frame is None:
            return
        times.add("capture", time.perf_counter() - t0)
        result = pipeline.process(frame, times, continuous=source.continuous)
        fps = rate.tick() if source.continuous else 0.0  # stills have no frame rate
        try:
            if not outputs.write(
                pipeline, result, times, started=t0, fps=fps, show_box=args.show_box
            ):
                stop.requested = True
                progress.stopped = "window closed"
        except OutputError as exc:
            # A full disk or a file size limit: stop, and keep what the files hold.
            progress.failure, progress.stopped = exc, "output failed"
            return
        progress.frames += 1
    if progress.stopped == "end of source":
        progress.stopped = "interrupted"


def run(args: argparse.Namespace) -> int:
    from .metadata import read_metadata
    from .outputs import Display, display_available

    model_path = resolve_model(args.model)
    meta = read_metadata(model_path)  # a bad file fails here, before anything is opened
    _check_model_input(meta, model_path)
    _check_counts(args, meta)
    _check_flip(args, meta, model_path)
    say = (lambda *_: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    outputs = Outputs()
    progress = _Progress()
    stop = _StopFlag()
    times = StageTimes()
    started = time.perf_counter()
    try:
        # Sources and outputs open before the model loads, so their errors come first and
        # alone; the runtime may log to stderr while it builds the interpreter.
        source = outputs.add(open_source(args.source, size=args.size, loop=args.loop))
        said = _open_outputs(args, meta, source.fps or 30.0, say, outputs)
        pipeline = pipeline_from_args(args, model_path, meta, say)
        for line in [f"source: {source.name}", *said]:
            say(line)
        if not args.no_display and display_available():
            outputs.display = outputs.add(Display())
        stop.install()
        started = time.perf_counter()
        _loop(args, source, pipeline, outputs, times, stop, progress)
    except KeyboardInterrupt:
        progress.stopped = "interrupted"
    finally:
        stop.restore()
        wall = time.perf_counter() - started
        _close(outputs, progress)
    if progress.failure is not None:
        progress.exit_code = 2  # like any error; the summary still follows
    try:
        if progress.failure is not None:  # one line, with what the recordings hold
            print(
                f"error: {progress.failure}; {_saved(outputs.recordings)}",
                file=sys.stderr,
                flush=True,
            )
        print(_summary(progress.frames, wall, times, progress.stopped), flush=True)
    except OSError:
        pass  # SIGHUP: the terminal is gone; the files are complete, which is what counts
    return progress.exit_code


def _close(outputs: Outputs, progress: _Progress) -> None:
    """Close everything opened, the last first; a failed close is reported, never raised."""
    for closer in reversed(outputs.closers):
        try:
            closer.close()
        except OutputError as exc:  # the last video segment did not reach the disk
            if progress.failure is None:
                progress.failure, progress.stopped = exc, "output failed"
        except Exception as exc:  # keep closing the rest
            print(f"warning: closing {type(closer).__name__}: {exc}", file=sys.stderr)


def _check_frame_size(frame) -> None:
    h, w = frame.image.shape[:2]
    if w * h > MAX_FRAME_PIXELS:
        raise SourceError(
            f"frame {frame.index} is {w}x{h}, over the frame size limit of "
            f"{MAX_FRAME_PIXELS} pixels (7680x4320 fits)"
        )


def quiet_opencv() -> None:
    """Silence OpenCV's and FFmpeg's own console logging (unless the user configured it):
    every failure is reported as one ``error:`` line by the CLI instead."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read at first open
    if "OPENCV_LOG_LEVEL" not in os.environ:
        import cv2

        # OpenCV 4.13 and later keep it only under cv2.utils.logging.
        set_level = getattr(cv2, "setLogLevel", None) or cv2.utils.logging.setLogLevel
        set_level(0)


def main(argv: list[str] | None = None) -> int:
    # Before OpenCV loads (it reads this once): its decoders then refuse a larger image from
    # the header, before allocating it.
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_FRAME_PIXELS))
    args = build_parser().parse_args(argv)
    quiet_opencv()
    # Ctrl-C before run() took over (resolving the model, reading its metadata): "error:
    # interrupted", 130; from loading on, run() ends the outputs and reports what was saved.
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
