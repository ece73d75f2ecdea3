"""The one exception every objective raises for unusable inputs."""


class ObjectiveError(ValueError):
    """An objective that cannot be computed; the message says why in one sentence."""
