"""What the service is: its settings file, systemd unit and system user, as pure text functions.

The service runs as an unprivileged system user (``binland``, in group ``video`` for the
camera) that systemd-sysusers creates from a sysusers.d(5) snippet: the unit runs it, as root,
before each start, so an SD card prepared with ``--rootfs`` gets the user at its first boot.
The unit is hardened (no new privileges, a read-only system and no homes, a private /tmp);
the service may write only its output folder. The stream's token lives in the settings file,
which only root can read: systemd reads it and hands the token to the service in its
environment, never on its command line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from ..access import STREAM_USER, TOKEN_ENV
from ..backends.base import DEFAULT_THREADS
from ..errors import DeployError
from ..multitrack import DEFAULT_DROP_AFTER, DEFAULT_FIND_EVERY
from ..tracking import AUTO_FINDER, DEFAULT_FACE_DETECTOR, DEFAULT_LOST_BELOW

SERVICE_NAME = "binland.service"
DEFAULT_PREFIX = "/opt/binland"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_SERVE = "0.0.0.0:8080"
# The recordings' disk budget: a few hours of video at the Pi's rates, a small part of a card.
DEFAULT_KEEP_MB = 1000.0
DEFAULT_SOURCE = "picamera2"
DEFAULT_USER = "binland"  # the dedicated system user the deploy creates
DEFAULT_SYSUSERS_DIR = "/etc/sysusers.d"
HIDDEN_HOMES = ("/home", "/root", "/run/user")  # what ProtectHome=yes hides from the service
# The sandbox every unit gets (edge.doctor checks a deployed unit for each line). It leaves the
# service what the camera and the stream need, and nothing else: no capabilities, only the
# camera's device groups, Internet and local sockets, the system-service syscalls. Not set, and
# why: PrivateDevices (it hides /dev/video*), PrivateNetwork and IPAddressDeny (the stream is
# served to the network), PrivateUsers (other groups, video among them, are unmapped in its
# user namespace: it could cost the camera, and nothing here can try it on a Pi's systemd),
# ProcSubset=pid (XNNPACK and OpenBLAS read /proc/cpuinfo), MemoryDenyWriteExecute (ctypes
# callbacks, which tflite's load_delegate passes, may need writable code pages from libffi).
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    # The camera: V4L2 video and subdevice nodes, the media controllers, the VideoCore
    # interface and the DMA heaps libcamera allocates frames from. "closed" also allows
    # /dev/null, /dev/zero, /dev/full, /dev/random and /dev/urandom.
    "DevicePolicy=closed",
    "DeviceAllow=char-video4linux rw",
    "DeviceAllow=char-media rw",
    "DeviceAllow=char-vchiq rw",
    "DeviceAllow=char-dma_heap rw",
    # The stream (IPv4 and IPv6) and local sockets; libcamera's udev device enumerator
    # listens on a netlink socket for cameras that come and go.
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "PrivateMounts=yes",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources",
    # A call outside the filter fails with EPERM instead of killing the service (a library
    # that tries sched_setaffinity or setpriority goes on without it).
    "SystemCallErrorNumber=EPERM",
    # Recordings readable by group video (the output folder is setgid video), by no one else.
    "UMask=0027",
)


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """The service's settings, written to ``PREFIX/binland.env`` (systemd EnvironmentFile)."""

    model_name: str
    prefix: str = DEFAULT_PREFIX
    source: str = DEFAULT_SOURCE
    serve: str = DEFAULT_SERVE
    threads: int = DEFAULT_THREADS  # the same default as every CLI (edge.cli)
    min_score: float = 0.3  # edge.live --min-score
    lost_below: float | str = "auto"  # edge.live --lost-below: auto, the model's own cut
    keep_mb: float = DEFAULT_KEEP_MB  # edge.live --keep-mb: the recordings' disk budget
    # Several subjects (edge.live --max-people / --max-faces) and how they are found:
    # --person-finder / --face-detector take a finder's name, none, auto (people only) or the
    # path on the Pi of a finder .tflite (finder_name: the one this deploy installs in models/).
    max_people: int = 1
    max_faces: int = 1
    person_finder: str = AUTO_FINDER
    face_detector: str = DEFAULT_FACE_DETECTOR
    find_every: int = DEFAULT_FIND_EVERY
    drop_after: float = DEFAULT_DROP_AFTER
    finder_name: str = ""
    extra_args: tuple[str, ...] = ()  # more `edge.live` flags, e.g. outputs (--jsonl PATH)
    user: str = DEFAULT_USER  # runs as this user, in group video; the default one is created
    token: str = field(default="", repr=False)  # the stream's secret: only in the settings file
    sysusers_dir: str = DEFAULT_SYSUSERS_DIR

    @property
    def model_path(self) -> str:
        return f"{self.prefix}/models/{self.model_name}"

    @property
    def finder_path(self) -> str | None:
        """Where the finder .tflite this deploy installs goes (None: it installs none)."""
        return f"{self.prefix}/models/{self.finder_name}" if self.finder_name else None

    @property
    def venv(self) -> str:
        return f"{self.prefix}/venv"

    @property
    def env_path(self) -> str:
        return f"{self.prefix}/binland.env"

    @property
    def output_dir(self) -> str:
        """The one folder the service may write (videos, JSONL logs)."""
        return f"{self.prefix}/output"

    @property
    def creates_user(self) -> bool:
        """Whether the service runs as the dedicated user that the deploy creates."""
        return self.user == DEFAULT_USER

    @property
    def sysusers_path(self) -> str:
        return f"{self.sysusers_dir}/binland.conf"


def render_env(s: ServiceSettings) -> str:
    def q(value: str) -> str:  # systemd EnvironmentFile quoting
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        "# Settings of binland.service, written by `python -m edge.deploy`.\n"
        "# Edit, then: sudo systemctl restart binland\n"
        "# A later deploy keeps your edits: its new settings go beside this file, to\n"
        f"# {s.env_path}.new, for you to merge.\n"
        "# BINLAND_SOURCE: picamera2, a camera index (0), a video file or an image folder.\n"
        "# BINLAND_MIN_SCORE: landmarks below this score are not trusted (not drawn filled,\n"
        "# held by the smoother; edge.live --crop-min-score, in BINLAND_ARGS, is the cut for\n"
        "# the next crop). BINLAND_LOST_BELOW: mean score below which the track restarts\n"
        f"# (auto: the cut the model records, else {DEFAULT_LOST_BELOW:g}).\n"
        "# BINLAND_KEEP_MB: recordings in the output folder are kept under this many MB, the\n"
        "# oldest deleted first (edge.live --keep-mb; a restart never overwrites a recording).\n"
        "# BINLAND_MAX_PEOPLE, BINLAND_MAX_FACES: follow up to this many people (pose models) or\n"
        "# faces (face models), each with its own ID (edge.live --max-people, --max-faces).\n"
        "# BINLAND_PERSON_FINDER, BINLAND_FACE_DETECTOR: how people or faces are found: a name\n"
        "# (blazepose, haar, blazeface), none, auto (people: our bundled 1-bit finder; for\n"
        "# several, blazepose where the teacher cache has it),\n"
        f"# or a finder .tflite the deploy installed in {s.prefix}/models.\n"
        "# BINLAND_FIND_EVERY: with several, the finder looks for newcomers every this many\n"
        "# frames. BINLAND_DROP_AFTER: seconds after which a lost person is forgotten.\n"
        "# BINLAND_ARGS: further `python -m edge.live` flags (see its --help), e.g. outputs.\n"
        f"# The service may write only under {s.output_dir}: --jsonl {s.output_dir}/landmarks.jsonl\n"
        f"# or --output {s.output_dir}/out.mp4.\n"
        f"BINLAND_MODEL={q(s.model_path)}\n"
        f"BINLAND_SOURCE={q(s.source)}\n"
        f"BINLAND_SERVE={q(s.serve)}\n"
        f"BINLAND_THREADS={q(str(s.threads))}\n"
        f"BINLAND_MIN_SCORE={q(repr(s.min_score))}\n"
        f"BINLAND_LOST_BELOW={q(str(s.lost_below))}\n"
        f"BINLAND_KEEP_MB={q(repr(s.keep_mb))}\n"
        + "".join(f"{key}={q(value)}\n" for key, value in multi_settings(s).items())
        + f"BINLAND_ARGS={q(shlex.join(s.extra_args))}\n"
        + (
            "# BINLAND_STREAM_TOKEN: the stream's secret (this file is readable by root only).\n"
            "# Open http://PI:PORT/?token=TOKEN, or the page and sign in with user "
            f"{STREAM_USER} and the\n"
            "# token as password. Replace it and restart to lock out every old link.\n"
            f"{TOKEN_ENV}={q(s.token)}\n"
            if s.token
            else ""
        )
    )


def multi_settings(s: ServiceSettings) -> dict[str, str]:
    """The settings of several subjects and their finder, as binland.env holds them."""
    return {
        "BINLAND_MAX_PEOPLE": str(s.max_people),
        "BINLAND_MAX_FACES": str(s.max_faces),
        "BINLAND_PERSON_FINDER": s.person_finder,
        "BINLAND_FACE_DETECTOR": s.face_detector,
        "BINLAND_FIND_EVERY": str(s.find_every),
        "BINLAND_DROP_AFTER": repr(float(s.drop_after)),
    }


# What the unit sets when binland.env does not: a settings file an earlier deploy wrote and the
# user edited is kept as it is, and may lack the settings added since. systemd lets the file
# override these (systemd.exec(5), EnvironmentFile=), so the service starts with edge.live's
# defaults instead of an empty argument.
UNIT_DEFAULTS = multi_settings(ServiceSettings(model_name="-"))


def render_sysusers(s: ServiceSettings) -> str:
    """The sysusers.d(5) snippet that creates the service's user, in group video."""
    return (
        "# The user binland.service runs as, written by `python -m edge.deploy`.\n"
        "# systemd-sysusers creates it; the unit runs it before each start.\n"
        f'u {s.user} - "binland landmark camera service" - -\n'
        f"m {s.user} video\n"
    )


# The restart back-off. systemd 254's RestartSteps=/RestartMaxDelaySec= do this, but Bookworm
# has systemd 252, which ignores them, and StartLimitBurst= would give up for good, which a
# camera that comes back must not make us do. So the unit counts failures itself, as root ("+"),
# in a file in /run that the service cannot write and a reboot forgets: ExecStopPost records
# how each run ended (a clean stop resets the count; a run of BACKOFF_HEALTHY_S or more counts
# as the first failure of a new series), and ExecStartPre waits before the next start, so that
# RestartSec plus the wait doubles from RESTART_SEC to BACKOFF_MAX_S.
RESTART_SEC = 5
BACKOFF_MAX_S = 120
BACKOFF_HEALTHY_S = 300
BACKOFF_STATE = "/run/binland.backoff"  # "FAILURES_IN_A_ROW START_TIME"
_READ_STATE = (
    'n=0; t=0; [ -f "$1" ] && read -r n t < "$1"; '
    'case $n in ""|*[!0-9]*) n=0;; esac; case $t in ""|*[!0-9]*) t=0;; esac; '
)
BACKOFF_WAIT = (
    _READ_STATE + f"d={RESTART_SEC}; i=1; "
    f'while [ "$i" -lt "$n" ] && [ "$d" -lt {BACKOFF_MAX_S} ]; do d=$((d * 2)); i=$((i + 1)); done; '
    f'[ "$d" -gt {BACKOFF_MAX_S} ] && d={BACKOFF_MAX_S}; '
    f'sleep $((d - {RESTART_SEC})); echo "$n $(date +%s)" > "$1"'
)
BACKOFF_RECORD = (
    _READ_STATE + "now=$(date +%s); "
    'if [ "$SERVICE_RESULT" = success ]; then n=0; '
    f"elif [ $((now - t)) -ge {BACKOFF_HEALTHY_S} ]; then n=1; "
    "else n=$((n + 1)); fi; "
    'echo "$n $t" > "$1"'
)


def _sh_command(script: str, state: str) -> str:
    """``/bin/sh -c SCRIPT`` as a unit's command line: a literal $ and % doubled, since systemd
    expands both (systemd.service(5), "Command lines"); the state file is the script's $1."""
    if "'" in script or "\\" in script:
        raise DeployError("internal error: the back-off script must not hold quotes or backslashes")
    body = script.replace("%", "%%").replace("$", "$$")
    return f"/bin/sh -c '{body}' binland-backoff {state}"


def render_unit(s: ServiceSettings) -> str:
    make_user = (
        f"ExecStartPre=+/usr/bin/systemd-sysusers {s.sysusers_path}\n" if s.creates_user else ""
    )
    # Only the dedicated user's: with an existing user (e.g. pi) this would also remove the
    # shared memory and semaphores of that user's other programs when the service stops.
    remove_ipc = "RemoveIPC=yes\n" if s.creates_user else ""
    return (
        "[Unit]\n"
        "Description=binland landmark camera service (python -m edge.live)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "# Never give up: a camera that comes back is picked up again. The back-off between\n"
        "# restarts is the ExecStartPre/ExecStopPost pair below, not a start rate limit.\n"
        "StartLimitIntervalSec=0\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"User={s.user}\n"
        "SupplementaryGroups=video\n"
        f"EnvironmentFile={s.env_path}\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        "Environment=PYTHONDONTWRITEBYTECODE=1\n"
        "# edge.live's defaults for settings that a binland.env from an older deploy lacks\n"
        "# (the file's own values win).\n"
        + "".join(f"Environment={key}={value}\n" for key, value in UNIT_DEFAULTS.items())
        + f"WorkingDirectory={s.prefix}\n"
        '# "+": as root, outside the sandbox, before each start: the user (if missing), its\n'
        "# output folder, and the back-off wait.\n"
        f"{make_user}"
        "# Setgid: recordings get group video, which UMask=0027 leaves able to read them.\n"
        f"ExecStartPre=+/usr/bin/install -d -o {s.user} -g video -m 2750 {s.output_dir}\n"
        "# Restart back-off that systemd 252 (Bookworm) honours: it ignores RestartSteps= and\n"
        f"# RestartMaxDelaySec= (254+). {RESTART_SEC} s, 10, 20, ... up to {BACKOFF_MAX_S} s "
        "between failed runs;\n"
        f"# a clean stop or a run of {BACKOFF_HEALTHY_S // 60} minutes starts the series again "
        f"(state: {BACKOFF_STATE}).\n"
        f"ExecStartPre=-+{_sh_command(BACKOFF_WAIT, BACKOFF_STATE)}\n"
        f"ExecStart={s.venv}/bin/python -m edge.live --model ${{BINLAND_MODEL}} "
        "--source ${BINLAND_SOURCE} --serve ${BINLAND_SERVE} --threads ${BINLAND_THREADS} "
        "--min-score ${BINLAND_MIN_SCORE} --lost-below ${BINLAND_LOST_BELOW} "
        "--keep-mb ${BINLAND_KEEP_MB} --max-people ${BINLAND_MAX_PEOPLE} "
        "--max-faces ${BINLAND_MAX_FACES} --person-finder ${BINLAND_PERSON_FINDER} "
        "--face-detector ${BINLAND_FACE_DETECTOR} --find-every ${BINLAND_FIND_EVERY} "
        "--drop-after ${BINLAND_DROP_AFTER} --no-display "
        "$BINLAND_ARGS\n"
        f"ExecStopPost=-+{_sh_command(BACKOFF_RECORD, BACKOFF_STATE)}\n"
        "Restart=always\n"
        f"RestartSec={RESTART_SEC}\n"
        "# Room for the longest back-off wait, which counts as part of the start.\n"
        f"TimeoutStartSec={BACKOFF_MAX_S + 60}\n"
        "# The sandbox: the camera's devices and the stream's sockets, no privileges, a read-only\n"
        "# system; only the output folder is writable (systemd-analyze security: about 1.5).\n"
        + "".join(f"{line}\n" for line in HARDENING)
        + remove_ipc
        + f"ReadWritePaths=-{s.output_dir}\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them (quotes removed)."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        parts = shlex.split(value) if value.strip() else [""]
        env[key.strip()] = " ".join(parts)
    return env


def exec_start_argv(unit_text: str, env: dict[str, str]) -> list[str]:
    """The argv systemd runs for the unit's ExecStart, given its environment file's ``env``.

    ``${VAR}`` becomes one word and ``$VAR`` splits on whitespace, as in systemd.exec(5); the
    unit's own ``Environment=`` lines apply where the file does not set a variable.
    """
    defaults = {}
    for line in unit_text.splitlines():
        if line.startswith("Environment="):
            for assignment in shlex.split(line[len("Environment=") :]):
                key, _, value = assignment.partition("=")
                defaults[key] = value
    env = {**defaults, **env}
    for line in unit_text.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line[len("ExecStart=") :])
            break
    else:
        raise DeployError("the unit has no ExecStart line")
    argv: list[str] = []
    for word in words:
        whole = re.fullmatch(r"\$\{(\w+)\}", word)
        split = re.fullmatch(r"\$(\w+)", word)
        if whole:
            argv.append(env.get(whole.group(1), ""))
        elif split:
            argv.extend(shlex.split(env.get(split.group(1), "")))
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return argv
