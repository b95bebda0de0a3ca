"""Keys and values of prompt prefixes, reused across requests (the idea of vLLM's automatic prefix caching).

The simulator's prompts share long prefixes: every prompt of one mode and label starts with the same chat
template and instructions, and a retry repeats its first attempt's prompt exactly. Prefilling a prompt costs
about as much per token as it would in a batch, so reusing what was already computed is the only way to make
it cheaper. Prefixes are stored in blocks of `block` tokens, each keyed by every token up to its end (a block
is only valid after exactly that prefix), and evicted least recently used beyond `max_tokens`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

# Per layer: (keys, values), each [1, kv heads, tokens, head dim].
LayerKV = list[tuple[torch.Tensor, torch.Tensor]]


class PrefixCache:
    def __init__(self, *, max_tokens: int, block: int = 16) -> None:
        self.max_tokens = max_tokens
        self.block = block
        self._blocks: OrderedDict[tuple[int, ...], LayerKV] = OrderedDict()

    @property
    def tokens(self) -> int:
        return len(self._blocks) * self.block

    def lookup(self, ids: list[int]) -> tuple[int, LayerKV]:
        """(n, keys and values of ids[:n]) for the longest cached prefix. At least one token is left over, since
        the caller needs the logits of the prompt's last position."""
        parts: list[LayerKV] = []
        end = self.block
        while end < len(ids):
            key = tuple(ids[:end])
            found = self._blocks.get(key)
            if found is None:
                break
            self._blocks.move_to_end(key)
            parts.append(found)
            end += self.block
        if not parts:
            return 0, []
        if len(parts) == 1:
            return self.block, parts[0]
        layers = [(torch.cat([p[i][0] for p in parts], dim=2), torch.cat([p[i][1] for p in parts], dim=2))
                  for i in range(len(parts[0]))]
        return len(parts) * self.block, layers

    def store(self, ids: list[int], layers: LayerKV, *, start: int = 0) -> None:
        """Keep the full blocks of ids (whose keys and values are `layers`, one row) from token `start` on."""
        if self.max_tokens < self.block:
            return
        for end in range(start + self.block, len(ids) + 1, self.block):
            key = tuple(ids[:end])
            if key in self._blocks:
                self._blocks.move_to_end(key)
                continue
            # Copies: a slice would keep the whole cache tensor it came from alive.
            self._blocks[key] = [(k[:, :, end - self.block:end].clone(), v[:, :, end - self.block:end].clone())
                                 for k, v in layers]
        while self.tokens > self.max_tokens:
            self._blocks.popitem(last=False)
