"""Exceptions whose messages a user can act on.

Every message says what was asked, what exists, and what to do. The CLI prints
``error: <message>`` and exits 2; the library only raises.
"""


class AlignlabError(Exception):
    """Base class: the message is shown to the user as one line."""


class ModelError(AlignlabError):
    """A model spec could not be resolved or loaded."""


class SiteError(AlignlabError):
    """A capture site name is unknown or out of range for the model."""


class DataError(AlignlabError):
    """A corpus or dataset is missing, empty or malformed."""


class StoreError(AlignlabError):
    """An activation store is missing, damaged, or was made with other arguments."""


class ArtifactError(AlignlabError):
    """A saved artifact (lens, probe, SAE) is malformed or belongs to another model."""


class OutputError(AlignlabError):
    """An output path cannot be written."""


class ConfigError(AlignlabError, ValueError):
    """Options that conflict or are out of range."""
