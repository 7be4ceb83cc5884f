"""The served byte-level models against an independent brute force, on REAL tokenizers.

SmolLM2's 49k byte-level BPE and Gemma 3's 262k SentencePiece BPE with byte fallback (the
tokenizers of the bundled models), each under tiny random Phi models built here. A Phi has a
bias on its output head: the bias is -inf outside a support of ~550 tokens per tokenizer (every
token that spells a piece of the test texts, tokens that run past their ends, a random sample
of the rest, EOS), so every probability the brute force needs is a plain forward pass over a
few hundred candidate tokens, and canonicality/validity have to be decided only for those
(a token of probability zero changes nothing). The reference (`bruteforce_reference.py`) imports
nothing from braid: token bytes from the tokenizer's vocabulary, canonicality by
``encode(decode(ids)) == ids``, validity by witnesses the tokenizer itself encodes.

One real `braid serve` (float64 models) answers with the official openai client: ``echo`` +
``logprobs=20`` + ``max_tokens=1`` scores every prompt byte (``token_logprobs``), lists the top
20 of each next-byte distribution (``top_logprobs``, the last one after the whole text) and
generates one byte. Tolerances: served and reference are both float64 computations of the same
sums in another order (a batched forward over a KV cache against one plain forward), so they
agree to ~1e-13 (3e-14 at most, measured); 1e-6 absolute on log-probabilities is a 1e-6 *relative* error on each
probability, however tiny (a byte of probability 1e-9 is held to the same relative accuracy as
one of 0.5), and far below any structural error (one wrong canonicality decision or one missed
branch moves these peaky random models by 1e-3..10 nats).

Exact mode is served as ``min_token_prob: 1e-300``: on these models that masks exactly the
tokens of probability zero (every support token has probability > 1e-250, asserted), so the
distribution is the exact one, while each new branch checks ~550 tokens instead of every
vocabulary token (plain exact reading of Gemma's 262k vocabulary takes minutes per text here).
One SmolLM2 entry runs with the real default (``min_token_prob: 0``) on a short text.

The fast settings are checked against the brute force of their documented definitions (README:
tokens below ``min_token_prob`` masked or kept unchecked, a scored text's own tokens checked
whatever their probability; cover branches below ``min_branch_share`` of the most likely one, or
beyond ``max_branches``, dropped unless they agree with the text being read), to the same 1e-6:
an exact statement of what they compute, stronger than a bound on their distance to exact (the
README's error figures are measured on a trained model, not bounds; on a random model the
non-canonical tail that "keep" lets through is large). The tests also require each knob to move
the distribution by over 1e-4 (total variation) from exact, so that it really acts here.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import openai
import pytest
import torch

from bruteforce_reference import END, BruteForce, Rule, TokenizerOracle, pruned_next_byte_logprobs
from server_process import start_server, stop_server

pytestmark = pytest.mark.slow  # ~2-3 min: a server with 12 models over two real tokenizers

API_KEY = "bruteforce-key"
TOL = 1e-6
TOP = 20  # the most top_logprobs the API gives

SMOL, GEMMA = "smollm2-135m-instruct", "gemma-3-270m"
# <= 12 bytes: ASCII letters, a two-byte é, spaces, digits, punctuation, and "ꙮ" (U+A66E), which
# Gemma has no token for (byte fallback <0xEA><0x99><0xAE>) and SmolLM2 spells in three byte tokens
TEXTS = ["Hi café 12", "ꙮ x=3"]
# a contraction, "\n\n" (one of Gemma's non-special added tokens, cut out before BPE; SmolLM2's
# look-ahead pre-tokenizer splits " \n\n😀" as "ĠĊ" "Ċ"), a four-byte character (SmolLM2: ðŁ ĺ Ģ)
NEWLINE_TEXT = "it's \n\n😀"
EXACT_TEXT = "é"  # read with min_token_prob 0 (every vocabulary token checked at each branch: slow)
# SmolLM2 spells it ê Ļ ® Ġx: the engine re-reads the last two tokens "\xae x" at byte level after
# the context "<|im_start|>" + ê Ļ (a context that ends inside a character), and " x" goes on as
# " xy", " xr", ... The brute force reads the whole prompt from the text context.
BOUNDARY_PROMPT = "ꙮ x"
FAST_SHARE = 0.05


# --- models --------------------------------------------------------------------------------
def tokenizer_folder(name: str) -> str:
    import platformdirs

    from braid.server.models.weights import resolve_source

    home = Path(os.environ.get("BRAID_HOME") or platformdirs.user_cache_dir("braid"))
    return resolve_source(name, home)  # converted once per machine (Gemma: 1-3 min the first time)


def support(token_bytes: list, texts: list[bytes], eos: int, seed: int = 0) -> list[int]:
    """Tokens the tiny models may emit: every piece of a text, up to 6 tokens running past each
    piece (for the run-past-the-end sums), the 64 one-byte tokens of the UTF-8 continuation bytes
    0x80-0xBF (so that a valid prefix ending inside a character always has an allowed way to
    finish it: without them one can be a dead end, every valid next token having probability
    zero), those of the lead bytes of multi-byte whitespace (valid after a space only as the
    start of whitespace: U+0085/U+00A0, U+1680, U+2000-U+205F, U+3000), 400 random text tokens
    and EOS."""
    rng = np.random.default_rng(seed)
    pieces = {t[a:b] for t in texts for a in range(len(t)) for b in range(a + 1, len(t) + 1)}
    longest = max(map(len, pieces))
    text_ids, chosen, longer = [], set(), {}
    for i, p in enumerate(token_bytes):
        if p:
            text_ids.append(i)
            if p in pieces or (len(p) == 1 and (0x80 <= p[0] < 0xC0 or p[0] in (0xC2, 0xE1, 0xE2, 0xE3))):
                chosen.add(i)
            for k in range(1, min(len(p) - 1, longest) + 1):
                if p[:k] in pieces:
                    longer.setdefault(p[:k], []).append(i)
    for piece in sorted(longer):
        chosen |= set(rng.choice(longer[piece], min(6, len(longer[piece])), replace=False).tolist())
    chosen |= set(rng.choice(text_ids, 400, replace=False).tolist())
    return sorted(chosen | {eos})


def build_model(folder: Path, tokenizer, ids: list[int], seed: int) -> Path:
    """A one-layer random Phi (hidden 32) over ``tokenizer``; output bias -inf outside ``ids``."""
    from transformers import GenerationConfig, PhiConfig, PhiForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    config = PhiConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, max_position_embeddings=64, partial_rotary_factor=0.5,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = PhiForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0)  # peaky: canonical or not matters by nats
        bias = torch.full((len(tokenizer),), float("-inf"))
        bias[torch.tensor(ids)] = 0.0
        model.lm_head.bias.copy_(bias)
    model.save_pretrained(folder)
    GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id).save_pretrained(folder)
    return folder


def text_context(tokenizer) -> tuple[int, ...]:
    """What the byte-level engine starts a completion prompt after (README: "after each member's
    BOS (or its tokenizer's own prefix)"): the tokenizer's own prefix of an empty text, else BOS."""
    own = tuple(tokenizer("", add_special_tokens=True)["input_ids"])
    return own or (tokenizer.bos_token_id,)


@pytest.fixture(scope="module")
def tokenizers():
    """key -> (the real tokenizer, its oracle)."""
    from transformers import AutoTokenizer

    out = {}
    for key, name in (("smol", SMOL), ("gemma", GEMMA)):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(name))
        out[key] = (tokenizer, TokenizerOracle(tokenizer))
    return out


@pytest.fixture(scope="module")
def folders(tokenizers, tmp_path_factory):
    texts = [t.encode() for t in [*TEXTS, NEWLINE_TEXT, EXACT_TEXT, BOUNDARY_PROMPT]]
    out = {}
    for model_name, seed in (("smol_a", 0), ("smol_b", 3), ("gemma_a", 1)):
        tokenizer, oracle = tokenizers[model_name.split("_")[0]]
        ids = support(oracle.token_bytes, texts, tokenizer.eos_token_id)
        out[model_name] = build_model(tmp_path_factory.mktemp(model_name), tokenizer, ids, seed)
    return out


@pytest.fixture(scope="module")
def server(folders, tmp_path_factory):
    """The server, started in the background (its start-up overlaps the reference's work)."""
    from concurrent.futures import ThreadPoolExecutor

    s, g, anti = (str(folders[k]) for k in ("smol_a", "gemma_a", "smol_b"))
    f64 = {"dtype": "float64"}
    exact = {**f64, "min_token_prob": 1e-300}
    fast = {**f64, "min_token_prob": 1e-3, "unchecked_tokens": "keep", "min_branch_share": FAST_SHARE}
    settings = {"api_key": API_KEY, "log_level": "info", "models": [
        {"id": "smol-tokens", "source": s, "engine": "transformers", **f64},
        {"id": "smol", "kind": "bytelevel", "source": s, **exact},
        {"id": "smol-exact", "kind": "bytelevel", "source": s, **f64},
        {"id": "gemma", "kind": "bytelevel", "source": g, **exact},
        {"id": "mix", "kind": "ensemble", "mode": "mix", **exact,
         "members": [{"source": s, "weight": 0.7}, {"source": g, "weight": 0.3}]},
        {"id": "product", "kind": "ensemble", "mode": "product", **exact,
         "members": [{"source": s, "weight": 1.0}, {"source": g, "weight": 0.5}]},
        {"id": "proxy", "kind": "proxy", "alpha": 0.5, **exact,
         "base": {"source": g}, "expert": {"source": s}, "anti_expert": {"source": anti}},
        {"id": "smol-mask", "kind": "bytelevel", "source": s, **f64, "min_token_prob": 1e-3},
        {"id": "smol-keep", "kind": "bytelevel", "source": s, **f64, "min_token_prob": 1e-3,
         "unchecked_tokens": "keep"},
        {"id": "smol-fast", "kind": "bytelevel", "source": s, **fast},
        {"id": "gemma-fast", "kind": "bytelevel", "source": g, **fast},
        {"id": "smol-branches", "kind": "bytelevel", "source": s, **exact, "max_branches": 2},
    ]}
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(start_server, settings, tmp_path_factory.mktemp("server-bruteforce"),
                               env={"OMP_NUM_THREADS": "1"})
        yield starting
        stop_server(starting.result())


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.result().base_url, api_key=API_KEY, max_retries=0, timeout=600)


@pytest.fixture(scope="module")
def brute(tokenizers, folders, server):
    """name -> BruteForce (exact rule); the models of one tokenizer share one oracle. (Asks for
    the server only to start it first.)"""
    from transformers import AutoModelForCausalLM

    out = {}
    for name, folder in folders.items():
        tokenizer, oracle = tokenizers[name.split("_")[0]]
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
        out[name] = BruteForce(oracle, model, text_context(tokenizer), (tokenizer.eos_token_id,))
    return out


# --- served answers ------------------------------------------------------------------------
def symbol(token: str) -> int:
    """A served byte token string -> the byte (256 = END)."""
    if token == "<|end|>":
        return END
    if len(token) == 4 and token.startswith("\\x"):
        return int(token[2:], 16)
    assert len(token) == 1 and ord(token) < 0x80, token
    return ord(token)


def served_walk(client, model: str, text: str):
    """(log P(byte_n | bytes before) for each prompt byte, [top-20 dicts byte -> logprob] after
    each prefix text[:n], n = 0..len, the greedy byte after the text)."""
    out = client.completions.create(model=model, prompt=text, max_tokens=1, echo=True, logprobs=TOP, temperature=0)
    block = out.choices[0].logprobs
    data = text.encode()
    assert len(block.token_logprobs) == len(data) + 1
    assert [symbol(t) for t in block.tokens[:len(data)]] == list(data)
    tops = [{symbol(k): v for k, v in top.items()} for top in block.top_logprobs]
    return block.token_logprobs[:len(data)], tops, symbol(block.tokens[-1]), block.token_logprobs[-1]


def assert_same_distribution(top: dict[int, float], reference: np.ndarray, where: str) -> None:
    """A served top-20 is the reference's 20 most likely symbols, with their log-probs."""
    possible = np.flatnonzero(np.isfinite(reference))
    assert len(top) == min(TOP, len(possible)), where
    for b, lp in top.items():
        assert lp == pytest.approx(reference[b], abs=TOL), (where, b)
    rest = [reference[b] for b in possible if b not in top]
    assert not rest or max(rest) <= min(top.values()) + TOL, where  # nothing likelier left out


def check_walk(client, model: str, text: str, reference: list[np.ndarray]) -> list[float]:
    """``reference[n]``: the next-byte log-probs after text[:n], n = 0..len(text). Returns the
    served steps."""
    data = text.encode()
    steps, tops, greedy, greedy_lp = served_walk(client, model, text)
    want = [float(reference[n][data[n]]) for n in range(len(data))]
    assert steps == pytest.approx(want, abs=TOL), (model, text)
    for n, top in enumerate(tops):
        assert_same_distribution(top, reference[n], f"{model} {data[:n]!r}")
    assert greedy == int(np.argmax(reference[-1])) and greedy_lp == pytest.approx(reference[-1].max(), abs=TOL)
    return steps


def walk(bf: BruteForce, text: str) -> list[np.ndarray]:
    data = text.encode()
    return [bf.next_byte_logprobs(data[:n]) for n in range(len(data) + 1)]


# --- combinations, from the README's definitions -----------------------------------------------
def mix(members: list[BruteForce], weights: list[float], prefix: bytes) -> np.ndarray:
    """sum_i w_i P_i(v | b) / sum_i w_i over the members with P_i(b) > 0."""
    live = [(w, m.next_byte_logprobs(prefix)) for w, m in zip(weights, members)
            if np.isfinite(m.prefix_logprob(prefix))]
    total = sum(w for w, _ in live)
    with np.errstate(divide="ignore"):
        return np.log(sum(w / total * np.exp(lp) for w, lp in live))


def product(members: list[BruteForce], weights: list[float], prefix: bytes) -> np.ndarray:
    """prod_i P_i(v | b)^w_i, renormalized (a byte any member rules out is ruled out)."""
    score = sum(w * m.next_byte_logprobs(prefix) for w, m in zip(weights, members))
    return score - np.logaddexp.reduce(score)


def proxy(base: BruteForce, expert: BruteForce, anti: BruteForce, alpha: float, prefix: bytes) -> np.ndarray:
    """log P_base + alpha * (log P_expert - log P_anti), renormalized; ruled out by the base, or by
    exactly one of expert and anti-expert: ruled out; by both: offset 0."""
    b, e, a = (m.next_byte_logprobs(prefix) for m in (base, expert, anti))
    offset = np.where(np.isfinite(e) & np.isfinite(a), alpha * (e - np.where(np.isfinite(a), a, 0.0)), 0.0)
    offset = np.where(np.isfinite(e) != np.isfinite(a), -np.inf, offset)
    score = b + offset
    return score - np.logaddexp.reduce(score)


# --- tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["smol_a", "gemma_a"])
def test_reference_reads_the_tokenizer(brute, name):
    """The reference's own footing: its token bytes decode like the tokenizer, the tokenizer's
    encoding of each text is among its tokenizations with positive mass (and the only canonical
    one), no tokenization is a dead end (see `support`), and its sums are consistent:
    P(b + x) = P(b) P(x | b), the run-past sums included."""
    bf = brute[name]
    tokenizer = bf.oracle.tokenizer
    rng = np.random.default_rng(0)
    for i in rng.choice(len(tokenizer), 3000, replace=False).tolist():
        piece = bf.token_bytes[i]
        if piece:
            try:
                text = piece.decode()
            except UnicodeDecodeError:
                continue
            assert tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False) == text
    for text in [*TEXTS, NEWLINE_TEXT, EXACT_TEXT, BOUNDARY_PROMPT]:
        data = text.encode()
        canonical = bf.oracle.encode(text)
        found = {ids for ids, _ in bf.tokenizations(data) if bf.oracle.text(ids) == data}
        assert canonical in found and [ids for ids in found if bf.oracle.is_canonical(ids)] == [canonical]
        assert not bf.dead_ends(data), text
        for n in range(len(data)):
            joint = bf.next_byte_masses(data[:n])[data[n]]
            assert joint == pytest.approx(bf.prefix_logprob(data[:n + 1]), abs=1e-12)
    raw = np.concatenate([bf.raw_row(ids) for ids in bf._raw])
    assert raw[np.isfinite(raw)].min() > np.log(1e-250)  # so min_token_prob 1e-300 masks only zeros
    if name == "gemma_a":  # the byte-fallback character really falls back
        assert bf.oracle.encode("ꙮ") == tuple(tokenizer.convert_tokens_to_ids(["<0xEA>", "<0x99>", "<0xAE>"]))


@pytest.mark.parametrize("model, member", [("smol", "smol_a"), ("gemma", "gemma_a")])
@pytest.mark.parametrize("text", [*TEXTS, NEWLINE_TEXT])
def test_exact_byte_level_matches_the_brute_force(client, brute, model, member, text):
    served = check_walk(client, model, text, walk(brute[member], text))
    # the sum of the served steps is the prefix log-probability of the text
    assert sum(served) == pytest.approx(brute[member].prefix_logprob(text.encode()), abs=TOL * len(served))


def test_exact_mode_without_knobs_matches_the_brute_force(client, brute):
    """``min_token_prob: 0``: every one of the 49k tokens is checked at each branch."""
    check_walk(client, "smol-exact", EXACT_TEXT, walk(brute["smol_a"], EXACT_TEXT))


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("model", ["mix", "product", "proxy"])
def test_ensembles_match_the_formulas_over_brute_force_members(client, brute, model, text):
    s, g, anti = brute["smol_a"], brute["gemma_a"], brute["smol_b"]
    data = text.encode()
    combine = {"mix": lambda p: mix([s, g], [0.7, 0.3], p), "product": lambda p: product([s, g], [1.0, 0.5], p),
               "proxy": lambda p: proxy(g, s, anti, 0.5, p)}[model]
    check_walk(client, model, text, [combine(data[:n]) for n in range(len(data) + 1)])


def _total_variation(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.exp(a) - np.exp(b)).sum())


@pytest.mark.parametrize("model, member, rule, share, branches", [
    ("smol-mask", "smol_a", Rule(1e-3, "mask"), 0.0, None),
    ("smol-keep", "smol_a", Rule(1e-3, "keep"), 0.0, None),
    ("smol-fast", "smol_a", Rule(1e-3, "keep"), FAST_SHARE, None),
    ("gemma-fast", "gemma_a", Rule(1e-3, "keep"), FAST_SHARE, None),
    ("smol-branches", "smol_a", Rule(1e-300), 0.0, 2),
])
@pytest.mark.parametrize("text", TEXTS)
def test_fast_settings_match_their_definitions(client, brute, model, member, rule, share, branches, text):
    data = text.encode()
    bf = brute[member].with_rule(Rule(rule.min_token_prob, rule.unchecked, targets=(data,)))  # the prompt is scored
    if share or branches:
        reference = pruned_next_byte_logprobs(bf, data, share, branches)
    else:
        reference = walk(bf, text)
    assert bf.threshold_margin > 1e-9  # no token so close to min_token_prob that rounding could flip it
    check_walk(client, model, text, reference)
    exact = walk(brute[member], text)
    distance = max(_total_variation(a, b) for a, b in zip(reference, exact))
    assert distance > 1e-4, f"{model}: the knob should change this random model's distribution"


def test_pruned_covers_without_pruning_are_the_enumeration(brute):
    """The cover walk used for min_branch_share / max_branches, with nothing pruned, equals the
    enumeration of tokenizations (two ways of summing the same masses)."""
    bf = brute["smol_a"]
    data = TEXTS[0].encode()
    for got, want in zip(pruned_next_byte_logprobs(bf, data), walk(bf, TEXTS[0])):
        np.testing.assert_allclose(got, want, atol=1e-12)


def _first_symbol(bf: BruteForce, prompt: bytes) -> dict[int, float]:
    """The exact boundary's first-token choices grouped by the first byte they add (END: the
    text ends at the prompt), as probabilities."""
    out: dict[int, float] = {}
    for (ids, ended), lp in bf.continuation_choices(prompt).items():
        key = END if ended else bf.oracle.text(ids)[len(prompt)]
        out[key] = out.get(key, 0.0) + float(np.exp(lp))
    return out


def test_exact_prompt_boundary_greedy_choice_is_the_brute_force_argmax(client, brute):
    """Greedy: the served completion is the most likely first token sequence reaching past the
    prompt (from the brute force over every tokenization of the prompt), then the plain model's
    greedy token."""
    bf = brute["smol_a"]
    prompt = BOUNDARY_PROMPT.encode()
    choices = sorted(bf.continuation_choices(prompt).items(), key=lambda kv: -kv[1])
    (ids, ended), best = choices[0]
    assert best - choices[1][1] > 1e-3  # a clear winner: rounding cannot swap them
    out = client.completions.create(model="smol-tokens", prompt=BOUNDARY_PROMPT, max_tokens=1, temperature=0,
                                    extra_body={"prompt_boundary": "exact"}).choices[0]
    if ended:
        assert out.text == "" and out.finish_reason == "stop"
        return
    row = bf.raw_row(ids)
    token = int(np.argmax(row))
    full = bf.oracle.text(ids) + (b"" if token in bf.eos_ids else bf.token_bytes[token])
    assert out.text == full[len(prompt):].decode("utf-8", errors="ignore")


def test_exact_prompt_boundary_samples_the_brute_force_choices(client, brute):
    """Seeded draws of the first choice: the first byte each adds (or the text ending) follows the
    brute-force choice distribution (an exact multinomial test)."""
    from scipy.stats import multinomial

    bf = brute["smol_a"]
    prompt = BOUNDARY_PROMPT.encode()
    target = _first_symbol(bf, prompt)
    out = client.completions.create(model="smol-tokens", prompt=BOUNDARY_PROMPT, max_tokens=1, temperature=1.0,
                                    seed=100, n=16, extra_body={"prompt_boundary": "exact"})  # n is at most 16
    draws = [END if c.text == "" else c.text.encode()[0] for c in out.choices]  # choice i draws with seed + i
    assert set(draws) <= set(target)
    # an exact multinomial test over the three likeliest first bytes and the rest pooled
    top = sorted(target, key=lambda k: -target[k])[:3]
    p = np.array([target[k] for k in top] + [1 - sum(target[k] for k in top)])
    assert p.min() > 0.1  # spread enough for 16 draws to tell distributions apart
    observed = [sum(d == k for d in draws) for k in top] + [sum(d not in top for d in draws)]
    outcomes = [c for c in itertools.product(range(len(draws) + 1), repeat=3) if sum(c) <= len(draws)]
    pmf = multinomial(len(draws), p).pmf([[*c, len(draws) - sum(c)] for c in outcomes])
    seen = multinomial(len(draws), p).pmf(observed)
    assert pmf[pmf <= seen * (1 + 1e-9)].sum() > 1e-3, (observed, p)
