"""The prompt-prefix cache of the transformers backend: blocks keyed by their whole prefix, LRU by tokens."""

import torch

from zerosearch_simulator.backends.prefix_cache import PrefixCache


def kv(ids: list[int], layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fake keys/values whose entries are the token ids, so a slice shows which tokens it holds."""
    row = torch.tensor(ids, dtype=torch.float32).view(1, 1, len(ids), 1)
    return [(row + layer, -row - layer) for layer in range(layers)]


def test_longest_cached_prefix_leaves_the_last_token_to_prefill():
    cache = PrefixCache(max_tokens=64, block=4)
    ids = list(range(10))
    cache.store(ids, kv(ids))
    assert cache.tokens == 8  # two full blocks of 10 tokens
    n, layers = cache.lookup(ids)
    assert n == 8
    assert layers[1][0].flatten().tolist() == [i + 1.0 for i in range(8)]
    assert layers[1][1].flatten().tolist() == [-i - 1.0 for i in range(8)]
    exact = list(range(8))
    assert cache.lookup(exact)[0] == 4  # all 8 are cached, but the last token must be fed to get logits
    assert cache.lookup(list(range(6)) + [99, 98, 97])[0] == 4  # diverges inside the second block


def test_a_block_is_only_reused_after_the_same_prefix():
    cache = PrefixCache(max_tokens=64, block=4)
    ids = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    cache.store(ids, kv(ids))
    # Same second block, different first block: nothing is reused.
    assert cache.lookup([0, 2, 3, 4, 5, 6, 7, 8, 9]) == (0, [])


def test_store_from_a_cached_start_adds_only_new_blocks_and_evicts_least_recently_used():
    cache = PrefixCache(max_tokens=12, block=4)
    a = [1, 1, 1, 1, 2, 2, 2, 2, 3]
    cache.store(a, kv(a))
    n, _ = cache.lookup(a + [5, 5, 5, 5])
    assert n == 8
    longer = a + [5, 5, 5, 5, 6]
    cache.store(longer, kv(longer), start=n)  # blocks [8, 12) only
    assert cache.tokens == 12 and cache.lookup(longer)[0] == 12
    b = [7, 7, 7, 7, 7]
    cache.store(b, kv(b))  # over 12 tokens: the least recently used block goes
    assert cache.tokens == 12
    assert cache.lookup(b)[0] == 4
    assert cache.lookup(longer)[0] == 0  # its first block was the oldest


def test_disabled_cache_stores_nothing():
    cache = PrefixCache(max_tokens=0, block=4)
    ids = list(range(9))
    cache.store(ids, kv(ids))
    assert cache.tokens == 0 and cache.lookup(ids) == (0, [])


def test_stored_blocks_are_copies():
    cache = PrefixCache(max_tokens=64, block=4)
    ids = list(range(5))
    layers = kv(ids)
    cache.store(ids, layers)
    layers[0][0].zero_()
    assert cache.lookup(ids)[1][0][0].flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
