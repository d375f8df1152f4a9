"""Starting up, for both clients: which failures of a startup node stop discovery at once
(bad credentials, a node that is not a cluster) and how the others are reported
in ClusterUnreachableError's list. Pure: no I/O.
"""

from __future__ import annotations

from redis import exceptions as rx

from . import errors

__all__ = ["STARTUP_ERRORS", "startup_failure", "unreachable"]

# What a startup node may fail with: startup_failure says which of these stop discovery.
STARTUP_ERRORS = (rx.AuthenticationError, errors.NotAClusterError, rx.ConnectionError, rx.TimeoutError, OSError,
                  rx.InvalidResponse)


def startup_failure(name: str, error: BaseException) -> str:
    """Why startup node `name` could not be used, for ClusterUnreachableError's list; raises what
    must stop discovery at once (bad credentials, a node that is not a cluster). Both clients."""
    if isinstance(error, rx.AuthenticationError):
        raise rx.AuthenticationError(f"authentication to {name} failed: {error} (check username/password)") from error
    if isinstance(error, errors.NotAClusterError):
        raise error
    if isinstance(error, rx.InvalidResponse):
        return f"{name}: does not speak the Redis protocol ({error}); is it a Redis port?"
    return f"{name}: {error}"


def unreachable(failures: list[str]) -> errors.ClusterUnreachableError:
    """The error when no startup node gave a map: every address, and why (startup_failure's words)."""
    return errors.ClusterUnreachableError("no startup node could be reached: " + "; ".join(failures))
