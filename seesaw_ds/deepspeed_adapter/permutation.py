"""A keyed bijection over ``[0, n)``: the epoch shuffle in O(1) memory, stable across versions.

``KeyedPermutation(n, seed, epoch)[i]`` is the dataset index at position ``i`` of that
epoch. It is an alternating (unbalanced) Feistel network over ``[0, 2**b)`` with
``2**b >= n`` the next power of two, restricted to ``[0, n)`` by cycle-walking (apply the
network again until the value falls inside; fewer than 2 passes on average since
``2**b < 2n``). The round function is the SplitMix64 finaliser of the round key xor the
half-block; round keys come from ``(seed, epoch, round)`` through the same mixer.

Everything is Python integer arithmetic with fixed 64-bit constants: no NumPy Generator, no
table, so the order cannot change with a library upgrade (pinned by golden values in
``tests/deepspeed_adapter/test_dsa_permutation.py``) and a lookup costs a few microseconds
and no memory whatever ``n`` is.

Note:
    A Feistel network with a few rounds is a pseudo-random permutation for training-data
    purposes (every index exactly once per epoch, no visible structure), not a
    cryptographic one.

Limitations:
    ``n`` must be below ``2**64`` (the mixer is 64 bits wide).
"""

from __future__ import annotations

__all__ = ["KeyedPermutation", "splitmix64"]

_MASK64 = (1 << 64) - 1
_ROUNDS = 6


def splitmix64(value: int) -> int:
    """SplitMix64's output function of ``value`` (64-bit in, 64-bit out)."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class KeyedPermutation:
    """Bijection of ``[0, n)`` keyed by ``(seed, epoch)``.

    Args:
        n: domain size, ``1 <= n < 2**64``.
        seed: any integer (``seesaw.data_seed``).
        epoch: any non-negative integer.
    """

    def __init__(self, n: int, seed: int, epoch: int = 0) -> None:
        n = int(n)
        if not 1 <= n < 1 << 64:
            raise ValueError(f"permutation size must lie in [1, 2**64), got {n}")
        self.n = n
        bits = max(1, (n - 1).bit_length())
        # Half-block widths alternate between the rounds: a high bits, then c high bits.
        self._high = bits // 2
        self._low = bits - self._high
        base = splitmix64(splitmix64(int(seed) & _MASK64) ^ (int(epoch) & _MASK64))
        self._keys = tuple(splitmix64(base ^ r) for r in range(_ROUNDS))

    def _network(self, x: int) -> int:
        high, low = self._high, self._low
        for key in self._keys:
            upper, lower = x >> low, x & ((1 << low) - 1)
            mixed = (upper ^ splitmix64(key ^ lower)) & ((1 << high) - 1)
            x = (lower << high) | mixed
            high, low = low, high
        return x

    def __getitem__(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} outside [0, {self.n})")
        x = self._network(index)
        while x >= self.n:  # cycle-walk back into [0, n)
            x = self._network(x)
        return x

    def __len__(self) -> int:
        return self.n
