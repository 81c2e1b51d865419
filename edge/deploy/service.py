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
from ..cli import DEFAULT_THREADS
from ..errors import DeployError

SERVICE_NAME = "binland.service"
DEFAULT_PREFIX = "/opt/binland"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_SERVE = "0.0.0.0:8080"
DEFAULT_SOURCE = "picamera2"
DEFAULT_USER = "binland"  # the dedicated system user the deploy creates
DEFAULT_SYSUSERS_DIR = "/etc/sysusers.d"
HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes")


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """The service's settings, written to ``PREFIX/binland.env`` (systemd EnvironmentFile)."""

    model_name: str
    prefix: str = DEFAULT_PREFIX
    source: str = DEFAULT_SOURCE
    serve: str = DEFAULT_SERVE
    threads: int = DEFAULT_THREADS  # the same default as every CLI (edge.cli)
    min_score: float = 0.3  # edge.live --min-score
    lost_below: float = 0.3  # edge.live --lost-below
    extra_args: tuple[str, ...] = ()  # more `edge.live` flags, e.g. outputs (--jsonl PATH)
    user: str = DEFAULT_USER  # runs as this user, in group video; the default one is created
    token: str = field(default="", repr=False)  # the stream's secret: only in the settings file
    sysusers_dir: str = DEFAULT_SYSUSERS_DIR

    @property
    def model_path(self) -> str:
        return f"{self.prefix}/models/{self.model_name}"

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
        "# BINLAND_SOURCE: picamera2, a camera index (0), a video file or an image folder.\n"
        "# BINLAND_MIN_SCORE: landmarks below this score are not trusted (not drawn filled,\n"
        "# not used to track). BINLAND_LOST_BELOW: mean score below which the track restarts.\n"
        "# BINLAND_ARGS: further `python -m edge.live` flags (see its --help), e.g. outputs.\n"
        f"# The service may write only under {s.output_dir}: --jsonl {s.output_dir}/landmarks.jsonl\n"
        f"# or --output {s.output_dir}/out.mp4.\n"
        f"BINLAND_MODEL={q(s.model_path)}\n"
        f"BINLAND_SOURCE={q(s.source)}\n"
        f"BINLAND_SERVE={q(s.serve)}\n"
        f"BINLAND_THREADS={q(str(s.threads))}\n"
        f"BINLAND_MIN_SCORE={q(repr(s.min_score))}\n"
        f"BINLAND_LOST_BELOW={q(repr(s.lost_below))}\n"
        f"BINLAND_ARGS={q(shlex.join(s.extra_args))}\n"
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


def render_sysusers(s: ServiceSettings) -> str:
    """The sysusers.d(5) snippet that creates the service's user, in group video."""
    return (
        "# The user binland.service runs as, written by `python -m edge.deploy`.\n"
        "# systemd-sysusers creates it; the unit runs it before each start.\n"
        f'u {s.user} - "binland landmark camera service" - -\n'
        f"m {s.user} video\n"
    )


def render_unit(s: ServiceSettings) -> str:
    make_user = (
        f"ExecStartPre=+/usr/bin/systemd-sysusers {s.sysusers_path}\n" if s.creates_user else ""
    )
    return (
        "[Unit]\n"
        "Description=binland landmark camera service (python -m edge.live)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "# Never give up: a camera that comes back is picked up again (see RestartSec).\n"
        "StartLimitIntervalSec=0\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"User={s.user}\n"
        "SupplementaryGroups=video\n"
        f"EnvironmentFile={s.env_path}\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        "Environment=PYTHONDONTWRITEBYTECODE=1\n"
        f"WorkingDirectory={s.prefix}\n"
        '# "+": as root, before each start: the user (if missing) and its output folder.\n'
        f"{make_user}"
        f"ExecStartPre=+/usr/bin/install -d -o {s.user} -g video -m 0750 {s.output_dir}\n"
        f"ExecStart={s.venv}/bin/python -m edge.live --model ${{BINLAND_MODEL}} "
        "--source ${BINLAND_SOURCE} --serve ${BINLAND_SERVE} --threads ${BINLAND_THREADS} "
        "--min-score ${BINLAND_MIN_SCORE} --lost-below ${BINLAND_LOST_BELOW} --no-display "
        "$BINLAND_ARGS\n"
        "Restart=always\n"
        "RestartSec=5\n"
        "# Back-off from 5 s to 2 min between restarts (systemd 254+; older ones ignore these).\n"
        "RestartSteps=6\n"
        "RestartMaxDelaySec=120\n"
        "# Hardening that leaves the camera (/dev) alone; only the output folder is writable.\n"
        + "".join(f"{line}\n" for line in HARDENING)
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
    """The argv systemd runs for the unit's ExecStart, given its environment.

    ``${VAR}`` becomes one word and ``$VAR`` splits on whitespace, as in systemd.exec(5).
    """
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
