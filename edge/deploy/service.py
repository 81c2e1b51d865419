"""What the service is: its settings file and systemd unit, as pure text functions."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ..errors import DeployError

SERVICE_NAME = "binland.service"
DEFAULT_PREFIX = "/opt/binland"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_SERVE = "0.0.0.0:8080"
DEFAULT_SOURCE = "picamera2"


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """The service's settings, written to ``PREFIX/binland.env`` (systemd EnvironmentFile)."""

    model_name: str
    prefix: str = DEFAULT_PREFIX
    source: str = DEFAULT_SOURCE
    serve: str = DEFAULT_SERVE
    threads: int = 4  # a Raspberry Pi 4 or 5 has four cores
    min_score: float = 0.3  # edge.live --min-score
    lost_below: float = 0.3  # edge.live --lost-below
    extra_args: tuple[str, ...] = ()  # more `edge.live` flags, e.g. outputs (--jsonl PATH)
    user: str | None = None  # run as this user (in group video) instead of root

    @property
    def model_path(self) -> str:
        return f"{self.prefix}/models/{self.model_name}"

    @property
    def venv(self) -> str:
        return f"{self.prefix}/venv"

    @property
    def env_path(self) -> str:
        return f"{self.prefix}/binland.env"


def render_env(s: ServiceSettings) -> str:
    def q(value: str) -> str:  # systemd EnvironmentFile quoting
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        "# Settings of binland.service, written by `python -m edge.deploy`.\n"
        "# Edit, then: sudo systemctl restart binland\n"
        "# BINLAND_SOURCE: picamera2, a camera index (0), a video file or an image folder.\n"
        "# BINLAND_MIN_SCORE: landmarks below this score are not trusted (not drawn filled,\n"
        "# not used to track). BINLAND_LOST_BELOW: mean score below which the track restarts.\n"
        "# BINLAND_ARGS: further `python -m edge.live` flags (see its --help), e.g. outputs\n"
        "# such as --jsonl /opt/binland/landmarks.jsonl or --output /opt/binland/out.mp4.\n"
        f"BINLAND_MODEL={q(s.model_path)}\n"
        f"BINLAND_SOURCE={q(s.source)}\n"
        f"BINLAND_SERVE={q(s.serve)}\n"
        f"BINLAND_THREADS={q(str(s.threads))}\n"
        f"BINLAND_MIN_SCORE={q(repr(s.min_score))}\n"
        f"BINLAND_LOST_BELOW={q(repr(s.lost_below))}\n"
        f"BINLAND_ARGS={q(shlex.join(s.extra_args))}\n"
    )


def render_unit(s: ServiceSettings) -> str:
    user = f"User={s.user}\nSupplementaryGroups=video\n" if s.user else ""
    return (
        "[Unit]\n"
        "Description=binland landmark camera service (python -m edge.live)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"{user}"
        f"EnvironmentFile={s.env_path}\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        f"WorkingDirectory={s.prefix}\n"
        f"ExecStart={s.venv}/bin/python -m edge.live --model ${{BINLAND_MODEL}} "
        "--source ${BINLAND_SOURCE} --serve ${BINLAND_SERVE} --threads ${BINLAND_THREADS} "
        "--min-score ${BINLAND_MIN_SCORE} --lost-below ${BINLAND_LOST_BELOW} --no-display "
        "$BINLAND_ARGS\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
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
