"""The ``python -m edge.deploy`` command line."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..cli import (
    ArgumentParser,
    add_model_argument,
    add_several_people_arguments,
    add_threads_argument,
    keep_mb_type,
    non_negative_float,
    resolve_model,
    run_cli,
    score_or_auto,
)
from ..errors import DeployError, EdgeError
from ..metadata import LandmarkMetadata, read_metadata
from ..tracking import (
    AUTO_FINDER,
    BUNDLED_FACE_FINDER,
    BUNDLED_PERSON_FINDER,
    DEFAULT_FACE_DETECTOR,
    DEFAULT_LOST_BELOW,
)
from .plan import deploy
from .service import (
    DEFAULT_KEEP_MB,
    DEFAULT_PREFIX,
    DEFAULT_SERVE,
    DEFAULT_SOURCE,
    DEFAULT_SYSUSERS_DIR,
    DEFAULT_UNIT_DIR,
    DEFAULT_USER,
    HIDDEN_HOMES,
    ServiceSettings,
)
from .targets import RootfsTarget, SshTarget, Target

PI_CPUS = 4  # a Raspberry Pi 4 or 5
# What "auto" picks that the deployed package carries in its own models folder.
BUNDLED_FINDERS = (BUNDLED_PERSON_FINDER, BUNDLED_FACE_FINDER)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m edge.deploy",
        description="Install the landmark camera service (venv, runtime, model, settings, systemd "
        "unit) on a Raspberry Pi over ssh, or into a Pi root filesystem mounted here. "
        "Safe to run again: finished steps are skipped.",
    )
    add = p.add_argument
    add_model_argument(p, required=True, what="the .tflite landmark model to serve")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--ssh", metavar="USER@HOST", help="deploy to a running Pi over ssh")
    where.add_argument(
        "--rootfs",
        metavar="PATH",
        type=Path,
        help="deploy into a Pi root filesystem at PATH (SD card or image mounted "
        "here); nothing runs on the Pi's CPU",
    )
    add(
        "--dry-run",
        action="store_true",
        help="print every step and whether it is needed; change nothing",
    )
    add(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"install folder on the Pi (default {DEFAULT_PREFIX})",
    )
    svc = p.add_argument_group("service settings (written to PREFIX/binland.env)")
    svc.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        help=f"what the service reads: picamera2, a camera index, a video file (default {DEFAULT_SOURCE})",
    )
    svc.add_argument(
        "--serve",
        default=DEFAULT_SERVE,
        metavar="HOST:PORT",
        help=f"where edge.live serves the MJPEG stream and page (default {DEFAULT_SERVE})",
    )
    # The Pi's own CPUs (a Pi 4 or 5 has 4 cores), not this machine's, bound the threads.
    add_threads_argument(svc, cpus=PI_CPUS, help="interpreter threads")
    svc.add_argument(
        "--min-score",
        type=non_negative_float,
        default=0.3,
        help="edge.live --min-score: landmarks below it are not trusted (default 0.3)",
    )
    svc.add_argument(
        "--lost-below",
        type=score_or_auto,
        default="auto",
        metavar="auto|S",
        help="edge.live --lost-below: mean score that restarts tracking (default auto: the "
        f"cut the model records, else {DEFAULT_LOST_BELOW:g})",
    )
    svc.add_argument(
        "--keep-mb",
        type=keep_mb_type,
        default=DEFAULT_KEEP_MB,
        metavar="MB",
        help="edge.live --keep-mb: the recordings under PREFIX/output are kept "
        f"under MB megabytes, the oldest deleted first (default {DEFAULT_KEEP_MB:g})",
    )
    many = p.add_argument_group(
        "people and faces (written to PREFIX/binland.env; edge.live's flags of the same names)",
        "A finder that runs a file (a PATH on this machine, or blazepose's or blazeface's from "
        "this machine's teacher cache) is loaded here first, refused if edge.live could not use "
        "it, and installed beside the model.",
    )
    # Finders not given: edge.live's defaults, each checked against the model's task.
    add_several_people_arguments(many, unset=("person_finder", "face_detector"))
    svc.add_argument(
        "--live-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more `python -m edge.live` argument (repeatable), e.g. "
        "--live-arg=--jsonl --live-arg=/opt/binland/output/landmarks.jsonl (the "
        "service may write only under PREFIX/output)",
    )
    svc.add_argument(
        "--user",
        default=DEFAULT_USER,
        help=f"run the service as this existing user, in group video, instead of "
        f"the system user {DEFAULT_USER} that the deploy creates (default {DEFAULT_USER})",
    )
    svc.add_argument(
        "--new-token",
        action="store_true",
        help="replace the stream's token (links with the old one stop working); "
        "otherwise a second deploy keeps it. A new token's URL is printed once",
    )
    svc.add_argument(
        "--unit-dir",
        default=DEFAULT_UNIT_DIR,
        help=f"where the systemd unit goes (default {DEFAULT_UNIT_DIR})",
    )
    svc.add_argument(
        "--sysusers-dir",
        default=DEFAULT_SYSUSERS_DIR,
        help=f"where the sysusers.d snippet that creates the user goes (default {DEFAULT_SYSUSERS_DIR})",
    )
    svc.add_argument(
        "--cc",
        help="--rootfs only: the cross C compiler for the native library "
        "(default aarch64-linux-gnu-gcc for an arm64 rootfs)",
    )
    ssh = p.add_argument_group("ssh")
    ssh.add_argument("--port", type=int, help="ssh port (default: ssh's own, usually 22)")
    ssh.add_argument("--identity", help="ssh private key file")
    ssh.add_argument(
        "--ssh-option",
        action="append",
        default=[],
        metavar="OPT",
        help="extra `ssh -o` option (repeatable), e.g. StrictHostKeyChecking=accept-new",
    )
    ssh.add_argument(
        "--no-sudo",
        action="store_true",
        help="the ssh user can write --prefix and --unit-dir itself: do not use sudo",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _deploy(args))


def _deploy(args: argparse.Namespace) -> None:
    args.model = resolve_model(args.model)
    meta = read_metadata(args.model)  # refuse a file that edge.live could not use
    prefix = args.prefix.rstrip("/")
    if not args.prefix.startswith("/") or prefix in ("", "/usr", "/etc", "/opt", "/home"):
        raise DeployError(f"--prefix must be an absolute folder of its own, not {args.prefix!r}")
    if any(part in ("", ".", "..") for part in prefix.split("/")[1:]):  # /opt/../home/pi, /opt/.
        raise DeployError(f"--prefix must be a plain path, without '.', '..' or '//': {prefix!r}")
    if any(prefix == home or prefix.startswith(home + "/") for home in HIDDEN_HOMES):
        # The unit's ProtectHome=yes hides these from the service: it could not even start.
        raise DeployError(
            f"--prefix {prefix}: the service's sandbox hides {', '.join(HIDDEN_HOMES)} from it; "
            "give a folder outside them (the default is /opt/binland)"
        )
    port = args.serve.rpartition(":")[2]
    if not port.isdigit() or int(port) > 65535:
        raise DeployError(f"--serve expects HOST:PORT or PORT, got {args.serve!r}")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", args.user):
        raise DeployError(f"--user expects a user name, got {args.user!r}")
    settings, finder = service_settings(args, meta, prefix)
    if args.rootfs:
        target: Target = RootfsTarget(args.rootfs, cross_cc=args.cc)
    else:
        target = SshTarget(
            args.ssh,
            port=args.port,
            identity=args.identity,
            ssh_options=args.ssh_option,
            sudo=False if args.no_sudo else None,
        )
    print(f"{'plan for' if args.dry_run else 'deploying to'} {target.name}:")
    report = deploy(
        target,
        settings,
        args.model,
        dry_run=args.dry_run,
        unit_dir=args.unit_dir.rstrip("/"),
        renew_token=args.new_token,
        finder=finder,
    )
    total = len(report.changed) + len(report.unchanged)
    print(f"{'would change' if args.dry_run else 'changed'} {len(report.changed)} of {total} steps")
    if report.open_url:  # a new token: the only time its URL is shown
        print(
            f"open {report.open_url} to watch the stream (shown once; the token is kept "
            f"in {settings.env_path}, readable by root only)"
        )


def service_settings(
    args: argparse.Namespace, meta: LandmarkMetadata, prefix: str
) -> tuple[ServiceSettings, Path | None]:
    """The service's settings from the command line (``args.model`` resolved, ``meta`` its
    metadata), and the finder file to install beside the model (None: none)."""
    finder_fields, finder = finder_settings(args, meta, prefix)
    settings = ServiceSettings(
        model_name=args.model.name,
        prefix=prefix,
        source=args.source,
        serve=args.serve,
        threads=args.threads,
        min_score=args.min_score,
        lost_below=args.lost_below,
        keep_mb=args.keep_mb,
        **finder_fields,
        extra_args=_live_args(args.live_arg),
        user=args.user,
        sysusers_dir=args.sysusers_dir.rstrip("/"),
    )
    return settings, finder


def finder_settings(
    args: argparse.Namespace, meta: LandmarkMetadata, prefix: str
) -> tuple[dict, Path | None]:
    """The service's settings for several subjects and their finder (ServiceSettings fields),
    and the finder file to install beside the model (None: none).

    The finder is the one ``edge.live`` would run with these flags (edge.tracking.finder_spec),
    and it is loaded here through the same tracker, so a file, name or count that the service
    would refuse at every start is refused now, in one line. A finder that runs a file (our
    1-bit finder, or MediaPipe's detector from a path or this machine's teacher cache) is
    installed in PREFIX/models and named by its path there, unless "auto" picked a bundled
    1-bit finder, which the deployed package carries itself."""
    from ..multitrack import multi_tracker_for
    from ..tracking import subject_of, tracker_for

    fields = {
        "max_people": args.max_people,
        "max_faces": args.max_faces,
        "person_finder": args.person_finder or AUTO_FINDER,
        "face_detector": args.face_detector or DEFAULT_FACE_DETECTOR,
        "find_every": args.find_every,
        "drop_after": args.drop_after,
    }
    # Per subject: its count flag and value, its finder flag and whether it was given.
    count_flag = {"person": "--max-people", "face": "--max-faces"}
    count = {"person": args.max_people, "face": args.max_faces}
    finder_flag = {"person": "--person-finder", "face": "--face-detector"}
    given = {"person": args.person_finder, "face": args.face_detector}
    if meta.task == "finder":
        used = [count_flag[k] for k in count if count[k] != 1]
        used += [finder_flag[k] for k in given if given[k] is not None]
        if used:
            raise DeployError(
                f"{args.model.name} is a finder (edge.live shows its finds in whole frames): "
                f"{', '.join(used)} {'is' if len(used) == 1 else 'are'} for landmark models"
            )
        return fields, None
    subject = subject_of(meta)
    other = "face" if subject == "person" else "person"
    kind = {"person": "pose", "face": "face"}[other]
    for flag, used in ((count_flag[other], count[other] != 1), (finder_flag[other], given[other])):
        if used:  # edge.live ignores (or refuses) it: say so before installing anything
            raise DeployError(
                f"{flag} is for {kind} models; this {meta.task} model takes "
                f"{count_flag[subject]} and {finder_flag[subject]}"
            )
    person, face = fields["person_finder"], fields["face_detector"]
    try:
        if count[subject] > 1:
            tracker = multi_tracker_for(
                meta, count[subject], face_detector=face, person_finder=person
            )
            finder = tracker.finder
        else:
            finder = tracker_for(meta, face_detector=face, person_finder=person).detector
    except EdgeError as exc:
        spec = person if subject == "person" else face
        if spec in str(exc) or given[subject] is None:
            raise
        raise DeployError(f"{finder_flag[subject]} {spec}: {exc}") from None
    path = getattr(finder, "path", None)
    if path is None:
        return fields, None
    if given[subject] is None and Path(path).resolve() in BUNDLED_FINDERS:
        return fields, None  # "auto" finds the same file in the deployed package's models
    key = "person_finder" if subject == "person" else "face_detector"
    fields[key] = f"{prefix}/models/{path.name}"
    fields["finder_name"] = path.name
    return fields, path


def _live_args(values: list[str]) -> tuple[str, ...]:
    """--live-arg values as the service passes them: systemd splits $BINLAND_ARGS on
    whitespace alone (no quoting), so a value with a space would reach edge.live in pieces."""
    for value in values:
        if not value or any(c.isspace() for c in value):
            raise DeployError(
                f"--live-arg {value!r}: the service passes each argument as one "
                "word, so it may not be empty or hold a space"
            )
    return tuple(values)
