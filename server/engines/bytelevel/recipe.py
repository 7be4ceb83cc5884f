"""What a byte-level model id is made of: a tree of sources, ensembles and proxy-tuning.

`build_recipe` turns a validated config entry (and the entries it refers to) into a tree of
frozen nodes; `instantiate` turns that tree into one request's next-byte model, given the
token context each source starts from (BOS for a completion prompt, its own chat template for
a conversation). A source that appears twice in a tree with the same options is read once.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Union

from ...decoding.bytelevel import ByteEnsemble, ProxyTunedByteLM
from .sources import LoadedSource

__all__ = ["build_recipe", "describe", "leaves"]


@dataclass(frozen=True)
class SourceLeaf:
    path: str
    dtype: str
    min_token_prob: float
    max_branches: int | None
    label: str  # how the config names it, for messages
    unchecked: str = "mask"
    min_branch_share: float = 0.0

    @property
    def options(self) -> dict:
        """The speed knobs, as ``ByteLM`` keyword arguments."""
        return {"min_token_prob": self.min_token_prob, "max_branches": self.max_branches,
                "unchecked": self.unchecked, "min_branch_share": self.min_branch_share}

    @property
    def key(self) -> tuple[str, str]:
        return (self.path, self.dtype)


@dataclass(frozen=True)
class EnsembleNode:
    members: tuple["Recipe", ...]
    weights: tuple[float, ...]
    mode: str


@dataclass(frozen=True)
class ProxyNode:
    base: "Recipe"
    expert: "Recipe"
    anti_expert: "Recipe"
    alpha: float


Recipe = Union[SourceLeaf, EnsembleNode, ProxyNode]


def build_recipe(config, by_id: Mapping[str, object], resolve: Callable[[str], str]) -> Recipe:
    """The recipe of a byte-level entry. ``by_id``: all entries; ``resolve``: source -> local path."""
    if config.kind == "ensemble":
        return EnsembleNode(tuple(_part(m, config, by_id, resolve) for m in config.members),
                            tuple(float(m.weight) for m in config.members), config.mode)
    if config.kind == "proxy":
        base, expert, anti = (_part(getattr(config, n), config, by_id, resolve)
                              for n in ("base", "expert", "anti_expert"))
        return ProxyNode(base, expert, anti, float(config.alpha))
    return _leaf(resolve(config.source), config, config.id)


def _part(ref, owner, by_id, resolve) -> Recipe:
    if ref.source is not None:
        return _leaf(resolve(ref.source), owner, ref.source)
    target = by_id[ref.model]
    if target.kind == "token":  # a token-level entry's source, read with the owner's dtype and byte options
        return _leaf(resolve(target.source), owner, target.id)
    return build_recipe(target, by_id, resolve)


def _leaf(path: str, owner, label: str) -> SourceLeaf:
    """A source read with ``owner``'s dtype and byte-level options."""
    return SourceLeaf(path, owner.dtype, owner.min_token_prob, owner.max_branches, label, owner.unchecked_tokens,
                      owner.min_branch_share)


def leaves(recipe: Recipe) -> list[SourceLeaf]:
    """Every source of the tree, first member first (repeats kept)."""
    if isinstance(recipe, SourceLeaf):
        return [recipe]
    parts = recipe.members if isinstance(recipe, EnsembleNode) else (recipe.base, recipe.expert, recipe.anti_expert)
    return [leaf for part in parts for leaf in leaves(part)]


def describe(recipe: Recipe) -> str:
    if isinstance(recipe, SourceLeaf):
        return recipe.label
    if isinstance(recipe, EnsembleNode):
        inner = ", ".join(f"{w:g}*{describe(m)}" for m, w in zip(recipe.members, recipe.weights))
        return f"{recipe.mode}({inner})"
    return (f"proxy({describe(recipe.base)} + {recipe.alpha:g}*({describe(recipe.expert)} - "
            f"{describe(recipe.anti_expert)}))")


def instantiate(recipe: Recipe, sources: Mapping[tuple[str, str], LoadedSource],
                context: Callable[[SourceLeaf], tuple[int, ...]], always_check: bytes = b"", _memo: dict | None = None):
    """One request's next-byte model; ``context(leaf)`` gives the tokens each source starts from;
    ``always_check`` (the prompt's bytes) is scored even where ``min_token_prob`` would mask its tokens."""
    memo = {} if _memo is None else _memo
    if isinstance(recipe, SourceLeaf):
        key = (recipe.key, *recipe.options.values())
        if key not in memo:
            source = sources[recipe.key]
            memo[key] = source.byte_lm(context(recipe), always_check=always_check, **recipe.options)
        return memo[key]
    if isinstance(recipe, EnsembleNode):
        return ByteEnsemble([instantiate(m, sources, context, always_check, memo) for m in recipe.members], recipe.weights,
                            recipe.mode)
    return ProxyTunedByteLM(instantiate(recipe.base, sources, context, always_check, memo),
                            instantiate(recipe.expert, sources, context, always_check, memo),
                            instantiate(recipe.anti_expert, sources, context, always_check, memo), recipe.alpha)
