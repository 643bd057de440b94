"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class VavlError(Exception):
    """Base class: a problem with the user's input, files or settings (not a bug in vavl)."""


class ConfigError(VavlError, ValueError):
    """A bad configuration value. The message names the field and what is allowed."""


class MediaError(VavlError):
    """A media file that cannot be read. The message names the file and the problem."""


class DataError(VavlError):
    """A bad manifest, corpus folder or feature cache. The message names the file."""


class TrainingError(VavlError):
    """Training cannot go on (a loss or weights that are not finite). The message names the step."""
