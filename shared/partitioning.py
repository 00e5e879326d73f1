"""Keys that spread a run's batches evenly over a topic's partitions (issue 13).

A stage command of stages 2-6 used to be keyed by its id: hashed, a run's 74 batches fell 41 to 33 on two
replicas' partitions as often as not (a binomial spread), and the replica with more took a round of model
calls longer than the other. A key made by `spread_key` names the batch's sequence number, and the partitioner
every producer of ours uses (`make_broker`) sends it to partition number mod count: consecutive batches go
round the partitions, so each replica holds an equal share of the batches out at any time. Every other key
goes where the Java client's murmur2 hash sends it, as before.
"""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

SPREAD_PREFIX = "spread:"
_PREFIX = SPREAD_PREFIX.encode()
_hashed = DefaultPartitioner()


def spread_key(number: int, unique: str) -> str:
    """The key of the `number`-th of a series of records (a stage's batch sequence); `unique` keeps keys of
    different records apart for whoever reads them (the workers' pools order records by key)."""
    return f"{SPREAD_PREFIX}{number}:{unique}"


def partition_for(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's partitioner interface: a spread key round the partitions by its number, any other key hashed."""
    if key is not None and key.startswith(_PREFIX):
        number, _, _ = key[len(_PREFIX) :].partition(b":")
        if number.isdigit():
            ordered = sorted(all_partitions)
            return ordered[int(number) % len(ordered)]
    partition: int = _hashed(key, all_partitions, available)
    return partition
