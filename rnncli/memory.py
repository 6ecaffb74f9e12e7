"""Will it fit: arrays are sized against this machine's memory before numpy is asked for them,
so a request too large is one line naming its cause, not a MemoryError or the kernel's OOM killer.
"""

from __future__ import annotations

import os

from rnncli.errors import ConfigError

GIB = 1 << 30


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return None


def require_bytes(need: int, what: str, remedy: str, error=ConfigError) -> None:
    """Refuse `need` bytes for `what` when they exceed this machine's memory; the message
    names the cause and `remedy` (what the user can change)."""
    total = physical_memory()
    if total is not None and need > total:
        raise error(f"{what}: about {need / GIB:,.1f} GiB needed, this machine has {total / GIB:,.1f} GiB; "
                    f"{remedy}")
