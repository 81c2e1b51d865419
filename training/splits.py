"""Which real sources are held out for validation, and which activity group each one shows.

A split file (``configs/splits/*.yaml``) names sources by pattern, per task::

    valid:                      # held out and REPORTED: every matching source
      pose: [squats_studio_woman_tfjs, "codebasics_*", "deepface_serengil/*"]
    select:                     # held out to CHOOSE models and recipes (never reported)
      pose: ["azuresamples_*", running_woman_side_sports2d]
    groups:                     # for per-activity tables; the first matching group wins
      pose:
        yoga: ["yogak_*", "yogalp_*"]
        lifting: [dumbbell_*]

A task may also list sources of its own on top of the task it is built from
(:data:`BUILT_FROM`): the person finder keeps the pose task's held-out sources out, and its
``person-finder`` lists hold out the several-people clips its own benchmark scores on, which
the pose model may still train on.

A pattern is an ``fnmatch`` pattern matched against a source's file stem
(``codebasics_messi_kick``) and against ``<folder>/<stem>`` (``deepface_serengil/img1``), so
a whole repository's folder of photos, a clip family or a photo tag is held out by one line.
Holding out whole *sources* (not frames or single photos) is what makes the validation
number predict footage nobody here picked: frames of one clip, or photos of one stock model,
resemble each other far more than they resemble anyone else.

Two held-out sides, because a number stops predicting anything once it has chosen a model:
training monitors, and people compare candidate recipes, on ``select``; the numbers we
report come from ``valid``, which nothing was chosen on.

``training.label`` uses it to put each source on its side (``train``, ``select`` or
``valid``); ``training.evaluate`` reports per source and per group from the
``sources_<task>.json`` index the label tool writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from edge.errors import EdgeError

UNGROUPED = "other"
# The task whose held-out sources (and groups) a task inherits: face parts are cut from the
# face clips, and each finder is distilled from its landmark task's footage. A task's own
# lists add to its parent's; its own groups, if any, replace them.
BUILT_FROM = {"faceparts": "face", "person-finder": "pose", "face-finder": "face"}


def _lineage(task: str) -> list[str]:
    """``task`` and the tasks it is built from, nearest first."""
    tasks = [task]
    while tasks[-1] in BUILT_FROM:
        tasks.append(BUILT_FROM[tasks[-1]])
    return tasks


def source_names(path: Path | str) -> tuple[str, str]:
    """The two names a pattern is matched against: the stem and ``<folder>/<stem>``."""
    path = Path(path)
    return path.stem, f"{path.parent.name}/{path.stem}"


def _matches(path: Path | str, patterns: list[str]) -> bool:
    names = source_names(path)
    return any(fnmatchcase(name, pattern) for pattern in patterns for name in names)


@dataclass(frozen=True)
class SourceSplit:
    """Held-out patterns and activity groups, per task (``pose``, ``face``, ...)."""

    valid: dict[str, list[str]] = field(default_factory=dict)
    select: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    path: str | None = None

    def patterns(self, side: str, task: str) -> list[str]:
        """The ``valid`` or ``select`` patterns of ``task`` and of the tasks it is built from."""
        lists = self.valid if side == "valid" else self.select
        return [p for t in _lineage(task) for p in lists.get(t, [])]

    def held_out(self, source: Path | str, task: str) -> bool:
        """Reported validation (``valid``); see :meth:`side` for all three."""
        return _matches(source, self.patterns("valid", task))

    def side(self, source: Path | str, task: str) -> str:
        """``"valid"`` (reported), ``"select"`` (for choosing models) or ``"train"``; a
        source that matches both held-out lists is reported (``valid`` wins)."""
        if self.held_out(source, task):
            return "valid"
        return "select" if _matches(source, self.patterns("select", task)) else "train"

    def group(self, source: Path | str, task: str) -> str:
        """The first group whose patterns match ``source``, else ``"other"`` (the groups of
        the nearest task in ``task``'s lineage that has any)."""
        tables = [self.groups[t] for t in _lineage(task) if t in self.groups]
        for name, patterns in (tables[0] if tables else {}).items():
            if _matches(source, patterns):
                return name
        return UNGROUPED

    def unused(self, sources: list[Path], task: str) -> list[str]:
        """Held-out patterns that match none of ``sources`` (a typo, or media not given)."""
        patterns = [*self.patterns("valid", task), *self.patterns("select", task)]
        return [p for p in patterns if not any(_matches(s, [p]) for s in sources)]


def _pattern_list(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise EdgeError(f"{where} must be a list of source names or patterns")
    # A name given with its suffix ("clip.mp4") means the stem, as it always has.
    return [Path(str(v)).stem if "*" not in str(v) and "/" not in str(v) else str(v) for v in value]


def load_split(path: Path | str | None) -> SourceSplit:
    """Read a split file; ``None`` is the empty split (every source trains)."""
    if path is None:
        return SourceSplit()
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EdgeError(f"cannot read the split file {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise EdgeError(f"the split file {path} must be a mapping with 'valid:' (and 'groups:')")
    unknown = sorted(set(data) - {"valid", "select", "groups"})
    if unknown:  # a typo ("vaild:") would silently train on what was meant to be held out
        raise EdgeError(
            f"{path}: unknown key {unknown[0]!r}; a split file has valid, select and groups"
        )
    valid_in, select_in = data.get("valid") or {}, data.get("select") or {}
    groups_in = data.get("groups") or {}
    if not all(isinstance(d, dict) for d in (valid_in, select_in, groups_in)):
        raise EdgeError(f"{path}: 'valid', 'select' and 'groups' map a task to its sources")
    valid = {str(t): _pattern_list(v, f"{path}: valid.{t}") for t, v in valid_in.items()}
    select = {str(t): _pattern_list(v, f"{path}: select.{t}") for t, v in select_in.items()}
    groups: dict[str, dict[str, list[str]]] = {}
    for task, table in groups_in.items():
        if not isinstance(table, dict):
            raise EdgeError(f"{path}: groups.{task} maps a group name to source patterns")
        groups[str(task)] = {
            str(g): _pattern_list(v, f"{path}: groups.{task}.{g}") for g, v in table.items()
        }
    return SourceSplit(valid=valid, select=select, groups=groups, path=str(path))
