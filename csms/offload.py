"""CPU-bound calls kept off the gevent hub, so one slow hash does not stall every connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# A password check (scrypt) takes ~100 ms and 32 MB: at most this many at once, however many logins
# arrive, so a flood of them waits its turn instead of growing the process by 32 MB per attempt. Made
# after gevent's monkey-patching in the web process, so waiting here blocks one greenlet only.
_PASSWORD_CHECKS = threading.BoundedSemaphore(2)


def off_the_hub(function: Callable[..., T], *args) -> T:
    """Run a CPU-bound call that releases the GIL (PBKDF2, scrypt) on gevent's thread pool when the
    process is monkey-patched, so the hub keeps serving chargers and requests meanwhile; directly
    otherwise (workers, CLI, tests)."""
    from gevent import get_hub, monkey

    if monkey.is_module_patched("threading"):
        return get_hub().threadpool.apply(function, args)
    return function(*args)


def password_check(function: Callable[..., T], *args) -> T:
    """`off_the_hub` for password hashing, at most two at a time."""
    with _PASSWORD_CHECKS:
        return off_the_hub(function, *args)
