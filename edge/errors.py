"""Errors that the command-line tools turn into a one-line message and a non-zero exit."""


class EdgeError(Exception):
    """Base class: a problem the user can fix (bad file, missing runtime, busy port...)."""


class ModelError(EdgeError):
    """The model file is missing, corrupt, or not a landmark model from this project."""


class BackendError(EdgeError):
    """No installed runtime can run this model, or the runtime failed."""


class SourceError(EdgeError):
    """A camera, video or image source cannot be opened or read."""


class DeployError(EdgeError):
    """The target cannot be deployed to as asked (unreachable, wrong OS, missing tool...)."""


class OutputError(EdgeError):
    """A recording (video, JSONL) or the stream cannot be written: a full disk, a file size
    limit, a folder that does not exist. The message says what was saved."""
