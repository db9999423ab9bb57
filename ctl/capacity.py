"""How much the data path holds: the one source of the capacity defaults.

The sizes are compile-time constants of the BPF programs (the loader passes them as -D
flags), map sizes, and the bounds the planner checks a desired state against before it
writes anything. gwctl's options, the agent, the loader and the planner all start from
DEFAULT.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capacity:
    # Slots in every service's Maglev table; prime. ~16 slots per backend at 1,000 backends.
    maglev_size: int = 16381
    # Frontends (address, port, protocol); service ids index svc_stats.
    max_services: int = 4096
    # Backends; backend ids index be_stats (id 0 is the reject share).
    max_backends: int = 65536
    # Conntrack entries (LRU: the least recently used flow goes first when full).
    ct_size: int = 262144

    def __post_init__(self) -> None:
        if not is_prime(self.maglev_size):
            raise ValueError(f"Maglev table size {self.maglev_size} is not prime (e.g. 16381, 65521)")
        for name in ("max_services", "max_backends", "ct_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")


def is_prime(n: int) -> bool:
    """Whether n is prime; Maglev needs a prime size so every skip walks every slot."""
    if n < 2:
        return False
    if n < 4:
        return True
    if n % 2 == 0 or n % 3 == 0:
        return False
    # Every prime above 3 is 6k +- 1; table sizes are small enough for trial division.
    divisor = 5
    while divisor * divisor <= n:
        if n % divisor == 0 or n % (divisor + 2) == 0:
            return False
        divisor += 6
    return True


DEFAULT = Capacity()
