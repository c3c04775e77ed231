"""Exit rules: when should a looped model stop iterating? One stopping T per example.

A rule is an :class:`ExitRule` value: a vectorised ``stop(table, params)`` over the per-(example,
loop count) table (:class:`LoopTable`) saying where the rule *may* stop; each example stops at the
first such swept T (ascending), else at its largest T. Built-in rules are registered as entry points
of the group ``benchgen.exit_rules`` in ``pyproject.toml``, exactly as a plugin registers its own::

    [project.entry-points."benchgen.exit_rules"]
    my-rule = "my_package.rules:RULE"      # an ExitRule value

Defaults follow the published recurrent-depth code (``shared/PAPERS.md``): Loop-Think-Generalize's
halting (``kl-entropy``) and Huginn's ``generate_with_adaptive_compute`` (``kl``, ``minp-kl``,
``entropy-diff``, ``latent-diff``, ``stable-argmax``: argmax-stability); ``entropy`` and
``confidence`` have no published default (values chosen here, stated in ``source``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from benchgen.errors import BenchgenError


class MissingColumn(Exception):
    """A rule needs a per-loop column the predictions do not have (the rule is then not available)."""


@dataclass
class LoopTable:
    """Dense per-(example, swept loop count) arrays, loop counts ascending (NaN / False where absent)."""

    loops: np.ndarray                          # (L,) swept loop counts, ascending
    present: np.ndarray                        # (N, L) bool: a prediction exists
    correct: np.ndarray                        # (N, L) bool
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # (N, L) float64 statistics
    answer: np.ndarray | None = None           # (N, L) uint64 hash of the normalised prediction

    def col(self, name: str) -> np.ndarray:
        """A statistic column; :class:`MissingColumn` when the predictions do not carry it."""
        if name not in self.columns or np.isnan(self.columns[name][self.present]).all():
            raise MissingColumn(name)
        return self.columns[name]


@dataclass(frozen=True)
class ExitRule:
    """A named stopping rule with default parameters and the thresholds its sweep visits."""

    name: str
    summary: str                                   # what it means, one line
    params: dict                                   # parameter -> default (the first is swept)
    sweep: tuple                                   # values of the first parameter in the threshold sweep
    stop: Callable[[LoopTable, dict], np.ndarray]  # (N, L) bool: may stop at this loop count
    source: str = ""                               # where the default comes from
    integer: tuple[str, ...] = ()                  # parameters that are counts (>= 1)

    @property
    def sweep_param(self) -> str:
        """The parameter the threshold sweep varies (the first one)."""
        return next(iter(self.params))


def _runs_unchanged(answer: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(N, L): how many consecutive swept loop counts before each one gave the same answer."""
    N, L = answer.shape
    same = np.zeros((N, L), dtype=bool)
    same[:, 1:] = (answer[:, 1:] == answer[:, :-1]) & present[:, 1:] & present[:, :-1]
    idx = np.broadcast_to(np.arange(L), (N, L))
    last_reset = np.maximum.accumulate(np.where(same, 0, idx), axis=1)
    return idx - last_reset


def _entropy_diff(t: LoopTable, p: dict) -> np.ndarray:
    """|H_T - H_prev| < delta (never at the first swept T)."""
    H = t.col("entropy")
    d = np.full(H.shape, np.nan)
    d[:, 1:] = np.abs(H[:, 1:] - H[:, :-1])  # Huginn: the entropy before the first step is 100
    with np.errstate(invalid="ignore"):
        return d < p["delta"]


def _lt(name: str, param: str) -> Callable[[LoopTable, dict], np.ndarray]:
    """A rule that stops where column ``name`` is below parameter ``param``."""
    def stop(t: LoopTable, p: dict) -> np.ndarray:
        """Where column ``name`` is below the parameter (NaN never stops)."""
        with np.errstate(invalid="ignore"):
            return t.col(name) < p[param]
    return stop


def _kl_entropy(t: LoopTable, p: dict) -> np.ndarray:
    """Loop-Think-Generalize: KL(p_T || p_prev) < eps and entropy < h."""
    with np.errstate(invalid="ignore"):
        return (t.col("kl_prev") < p["eps"]) & (t.col("entropy") < p["h"])


def _confidence(t: LoopTable, p: dict) -> np.ndarray:
    """The least confident answer token's max probability reaches q."""
    with np.errstate(invalid="ignore"):
        return t.col("confidence") >= p["q"]


def _stable_argmax(t: LoopTable, p: dict) -> np.ndarray:
    """The answer unchanged over the last k loop-count changes (Huginn's argmax-stability)."""
    if t.answer is None:
        raise MissingColumn("prediction")
    return _runs_unchanged(t.answer, t.present) >= int(p["k"])


def _fixed(t: LoopTable, p: dict) -> np.ndarray:
    """Stop at T for every example (T must be swept)."""
    T = int(p["T"])
    if T not in t.loops:
        raise BenchgenError(f"--exit-rule fixed:T={T}: T is not among the swept loops {t.loops.tolist()}")
    return np.broadcast_to(t.loops == T, t.present.shape)


KL_ENTROPY = ExitRule("kl-entropy", "stop at the first T with KL(p_T || p_prev) < eps and entropy < h",
                      {"eps": 0.01, "h": 3.0}, (1e-4, 1e-3, 1e-2, 1e-1, 1.0), _kl_entropy,
                      "Loop-Think-Generalize adaptive halting (eps 0.01, entropy 3.0)")
KL = ExitRule("kl", "stop at the first T with KL(p_prev || p_T) < eps (p_prev uniform before the first T)",
              {"eps": 5e-4}, (1e-6, 1e-5, 1e-4, 5e-4, 1e-3, 1e-2, 1e-1), _lt("kl_from_prev", "eps"),
              "Huginn generate_with_adaptive_compute, criterion kl (5e-4)")
MINP_KL = ExitRule("minp-kl", "kl after flooring probabilities below 0.1 x max to 1/V", {"eps": 1e-6},
                   (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2), _lt("minp_kl", "eps"),
                   "Huginn generate_with_adaptive_compute, criterion minp-kl (1e-6)")
ENTROPY = ExitRule("entropy", "stop at the first T whose answer entropy is below h (nats)", {"h": 0.5},
                   (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0), _lt("entropy", "h"),
                   "no published default; 0.5 nats chosen here")
ENTROPY_DIFF = ExitRule("entropy-diff", "stop at the first T with |H_T - H_prev| < delta", {"delta": 1e-3},
                        (1e-4, 1e-3, 1e-2, 1e-1, 0.5), _entropy_diff,
                        "Huginn generate_with_adaptive_compute, criterion entropy-diff (1e-3)")
LATENT_DIFF = ExitRule("latent-diff", "stop at the first T with ||s_prev - s_T|| / ||s_T|| < delta (loop state)",
                       {"delta": 0.03}, (0.003, 0.01, 0.03, 0.1, 0.3), _lt("latent_diff", "delta"),
                       "Huginn generate_with_adaptive_compute, criterion latent-diff (0.03)")
STABLE_ARGMAX = ExitRule("stable-argmax", "stop once the answer has stayed the same over k consecutive loop-count "
                         "changes", {"k": 5}, (1, 2, 3, 4, 5, 6, 8), _stable_argmax,
                         "Huginn generate_with_adaptive_compute, criterion argmax-stability (5)", integer=("k",))
CONFIDENCE = ExitRule("confidence", "stop at the first T whose least confident answer token has max p >= q",
                      {"q": 0.9}, (0.5, 0.7, 0.8, 0.9, 0.95, 0.99), _confidence,
                      "no published default; 0.9 chosen here")
FIXED = ExitRule("fixed", "the same T for every example (default: the trained T, else the largest swept)",
                 {"T": None}, (), _fixed, "fixed-T baseline", integer=("T",))


def rule_names() -> list[str]:
    """Registered rule names, built-ins first."""
    from benchgen import registry

    return list(registry.specs(registry.EXIT_RULE_GROUP))


def get_rule(name: str) -> ExitRule:
    """The rule registered under ``name`` (one clear line for unknown names and non-rules)."""
    from benchgen import registry

    specs = registry.specs(registry.EXIT_RULE_GROUP)
    if name not in specs:
        raise BenchgenError(f"--exit-rule {name}: unknown rule (expected one of {', '.join(specs)})")
    rule = registry.load_target(specs[name], f"--exit-rule {name}")
    if not isinstance(rule, ExitRule):
        raise BenchgenError(f"--exit-rule {name}: entry point {specs[name]!r} is a {type(rule).__name__}, "
                            "not a benchgen.evaluators.exit_rules.ExitRule")
    return rule


def _value(rule: ExitRule, key: str, text: str) -> float | int:
    """One parameter value, checked: finite, non-negative, counts integers >= 1."""
    try:
        v = float(text)
    except ValueError:
        raise BenchgenError(f"--exit-rule {rule.name}:{key}={text}: expected a number") from None
    if math.isnan(v) or math.isinf(v) or v < 0:
        raise BenchgenError(f"--exit-rule {rule.name}:{key}={text}: expected a finite number >= 0")
    if key in rule.integer:
        if v != int(v) or v < 1:
            raise BenchgenError(f"--exit-rule {rule.name}:{key}={text}: expected an integer >= 1")
        return int(v)
    return v


def parse_spec(spec: str) -> tuple[ExitRule, dict]:
    """``NAME[:k=v,...]`` -> (rule, its parameters with the given ones replaced)."""
    name, _, rest = spec.strip().partition(":")
    rule = get_rule(name)
    params = dict(rule.params)
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, text = item.partition("=")
        if not eq or key not in rule.params:
            raise BenchgenError(f"--exit-rule {spec}: expected {name}:KEY=VALUE with KEY one of "
                                f"{', '.join(rule.params)}")
        params[key] = _value(rule, key, text)
    return rule, params


def stop_index(table: LoopTable, may_stop: np.ndarray) -> np.ndarray:
    """Per example, the index of the first present loop count where the rule may stop, else the last present."""
    m = may_stop & table.present
    L = table.present.shape[1]
    last = L - 1 - np.argmax(table.present[:, ::-1], axis=1)
    return np.where(m.any(axis=1), np.argmax(m, axis=1), last)
