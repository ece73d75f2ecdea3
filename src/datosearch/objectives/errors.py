"""The one exception every objective raises for unusable inputs."""

from ..errors import UserValueError


class ObjectiveError(UserValueError):
    """An objective that cannot be computed; the message says why in one sentence."""
