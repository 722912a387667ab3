"""Continual learning on permuted digits: do active dendrites curb catastrophic forgetting?

The experiment of Iyer et al. (2022, "Avoiding Catastrophe", Front. Neurorobot.
16:846219, section 4.2: permuted MNIST), scaled to scikit-learn's 8x8 digits so that it
runs on a laptop CPU. Task ``t`` is the digits with a fixed random permutation of the 64
pixels (task 0 is unpermuted); one 10-way head is shared by all tasks (domain-incremental
learning); tasks are learned one after another, never revisited.

Networks, all with the same hidden sizes:

- ``"dendritic"``: active-dendrite layers (absolute-max gating by default) + k-WTA, with
  a context vector per task (Numenta's ``DendriticMLP``);
- ``"mlp"``: a plain ReLU MLP;
- ``"mlp_kwta"``: the MLP with k-WTA instead of ReLU;
- ``"mlp_kwta_context"``: the same with the context vector appended to the input (a control:
  is it the dendrites, or just knowing the task?).

Context vectors (``context=``):

- ``"onehot"``: the task index, one-hot, given at training and at test time;
- ``"prototype"``: the mean training input of the task (Numenta's "centroid" / prototype
  method); at test time each sample's context is the nearest prototype (Euclidean), so
  the task is *inferred*, not given.

Metrics (``R[i, j]`` = test accuracy on task ``j`` after training on task ``i``):

- average accuracy on the tasks seen so far after each task (the forgetting curve);
- forgetting (Chaudhry et al. 2018): mean over ``j < T-1`` of ``max_i R[i, j] - R[T-1, j]``;
- stability gap (De Lange et al. 2023, ICLR, "Continual evaluation for lifelong learning:
  identifying the stability gap"): old tasks are evaluated every ``eval_every`` steps while
  a new task is learned; the gap is the mean over new tasks ``t >= 1`` and old tasks
  ``j < t`` of ``acc_j(before task t) - min_{steps of task t} acc_j``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from neurosim import _distributed as ddp
from neurosim.dendrites.layers import ActiveDendritesLayer, KWinners, _check_fraction

__all__ = [
    "MODELS",
    "ContinualResult",
    "DendriticMLP",
    "MLP",
    "PermutedDigits",
    "build_model",
    "make_permuted_digits",
    "mlp_parameter_count",
    "parameter_matched_hidden_sizes",
    "run_continual",
]

MODELS = ("dendritic", "mlp", "mlp_kwta", "mlp_kwta_context")
CONTEXTS = ("onehot", "prototype")


@dataclass
class PermutedDigits:
    """Permuted 8x8 digits. Inputs scaled to [0, 1]; shared train/test split for all tasks.

    Attributes
    ----------
    X_train, X_test : ndarray of float32, shape (n_samples, 64)
        Unpermuted images; task ``t`` sees ``X[:, permutations[t]]``.
    y_train, y_test : ndarray of int64, shape (n_samples,)
    permutations : ndarray of int64, shape (n_tasks, 64)
        Row 0 is the identity.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    permutations: np.ndarray

    @property
    def n_tasks(self) -> int:
        return len(self.permutations)

    def task(self, t: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Inputs and labels of task ``t`` for ``split`` in {"train", "test"}."""
        X, y = (self.X_train, self.y_train) if split == "train" else (self.X_test, self.y_test)
        return X[:, self.permutations[t]], y


def make_permuted_digits(
    n_tasks: int = 10, test_fraction: float = 0.2, random_state: int | None = 0
) -> PermutedDigits:
    """Load ``sklearn.datasets.load_digits`` (shipped with scikit-learn) and permute it.

    Parameters
    ----------
    n_tasks : int
        Number of tasks (``>= 1``); task 0 is unpermuted.
    test_fraction : float
        Held-out fraction, stratified by digit, in (0, 1).
    random_state : int or None
        Seed of the split and of the permutations.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
        raise ValueError(f"n_tasks: expected a positive integer, got {n_tasks!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    rng = np.random.default_rng(random_state)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_fraction, stratify=y, random_state=int(rng.integers(2**31))
    )
    perms = np.stack([np.arange(64)] + [rng.permutation(64) for _ in range(n_tasks - 1)])
    return PermutedDigits(
        X_tr, y_tr.astype(np.int64), X_te, y_te.astype(np.int64), perms.astype(np.int64)
    )


class DendriticMLP(nn.Module):
    """Active-dendrites network: (dendritic layer -> k-WTA) per hidden layer, linear head.

    Numenta's ``DendriticMLP`` (Iyer et al. 2022, Fig. 3), here with ``kw=True``.

    Parameters
    ----------
    input_size, output_size : int
    hidden_sizes : sequence of int
    n_segments : int
        Segments per hidden unit (Numenta: one per task).
    context_dim : int
    kw_percent_on : float
        Fraction of hidden units that win.
    variant : {"bias", "sigmoid", "absolute_max"}
    weight_sparsity, dendrite_sparsity : float
        Fixed zero fractions of the feed-forward and segment weights.
    boost_strength, k_inference_factor : float
        k-WTA settings (Numenta's ``DendriticMLP``: 0 and 1).
    context_density : float
        Expected fraction of non-zero context entries (``1 / n_tasks`` for one-hot), used by
        the sparse Kaiming initialisation of the segments.
    dendrite_init_gain : float
        Multiplier of the segments' initial weight bound. A gain above 1 makes the initial
        gates ``sigmoid(d)`` differ strongly between contexts, so each context starts with
        its own k-WTA sub-network (as in context-dependent gating, Masse et al. 2018,
        PNAS 115:E10467).
    generator : torch.Generator, optional
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_sizes: Sequence[int],
        n_segments: int,
        context_dim: int,
        kw_percent_on: float = 0.05,
        variant: str = "absolute_max",
        weight_sparsity: float = 0.0,
        dendrite_sparsity: float = 0.0,
        boost_strength: float = 0.0,
        k_inference_factor: float = 1.0,
        context_density: float = 1.0,
        dendrite_init_gain: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_fraction("kw_percent_on", kw_percent_on, False, True)
        _check_fraction("dendrite_sparsity", dendrite_sparsity)
        for name, value, low in (("boost_strength", boost_strength, 0.0),
                                 ("k_inference_factor", k_inference_factor, None),
                                 ("dendrite_init_gain", dendrite_init_gain, None)):
            if not (math.isfinite(value) and (value > 0 if low is None else value >= low)):
                rng = "> 0" if low is None else ">= 0"
                raise ValueError(f"{name}: expected a finite number {rng}, got {value!r}")
        _check_fraction("context_density", context_density, False, True)
        self.dendritic_layers = nn.ModuleList()
        self.kwinners = nn.ModuleList()
        sizes = [input_size, *hidden_sizes]
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layer = ActiveDendritesLayer(
                fan_in, fan_out, n_segments, context_dim, variant,
                weight_sparsity, dendrite_sparsity, generator=generator,
            )
            # Numenta's sparse Kaiming init: scale by the density of input and weights, so
            # that a layer fed by k-WTA (or a one-hot context) starts with unit variance
            input_density = 1.0 if i == 0 else kw_percent_on
            _uniform_(layer.weight, fan_in * input_density * (1 - weight_sparsity), generator)
            _uniform_(layer.segments.weights,
                      context_dim * context_density * (1 - dendrite_sparsity), generator,
                      gain=dendrite_init_gain)
            self.dendritic_layers.append(layer)
            self.kwinners.append(KWinners(fan_out, kw_percent_on, k_inference_factor,
                                          boost_strength=boost_strength))
        self.head = nn.Linear(sizes[-1], output_size)
        _init_linear(self.head, generator, kw_percent_on)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer, kw in zip(self.dendritic_layers, self.kwinners):
            x = kw(layer(x, context))
        return self.head(x)


class MLP(nn.Module):
    """A feed-forward network with ReLU or k-WTA hidden layers (the baselines).

    ``context_input=True`` appends the context vector to the input.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_sizes: Sequence[int],
        kw_percent_on: float | None = None,
        context_dim: int = 0,
        context_input: bool = False,
        boost_strength: float = 0.0,
        k_inference_factor: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if kw_percent_on is not None:
            _check_fraction("kw_percent_on", kw_percent_on, False, True)
        for name, value, low in (("boost_strength", boost_strength, 0.0),
                                 ("k_inference_factor", k_inference_factor, None)):
            if not (math.isfinite(value) and (value > 0 if low is None else value >= low)):
                rng = "> 0" if low is None else ">= 0"
                raise ValueError(f"{name}: expected a finite number {rng}, got {value!r}")
        self.context_input = context_input
        sizes = [input_size + (context_dim if context_input else 0), *hidden_sizes]
        layers: list[nn.Module] = []
        density = 1.0 if kw_percent_on is None else kw_percent_on
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin = nn.Linear(fan_in, fan_out)
            _init_linear(lin, generator, 1.0 if i == 0 else density)
            layers.append(lin)
            layers.append(
                nn.ReLU()
                if kw_percent_on is None
                else KWinners(fan_out, kw_percent_on, k_inference_factor,
                              boost_strength=boost_strength)
            )
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], output_size)
        _init_linear(self.head, generator, density)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.context_input:
            x = torch.cat([x, context], dim=1)
        return self.head(self.hidden(x))


def _uniform_(param: torch.Tensor, effective_fan_in: float, generator, gain: float = 1.0) -> None:
    bound = gain / np.sqrt(max(effective_fan_in, 1e-12))
    with torch.no_grad():
        param.copy_((torch.rand(param.shape, generator=generator) * 2 - 1) * bound)


def _init_linear(layer: nn.Linear, generator, input_density: float = 1.0) -> None:
    # torch's Linear init (uniform +-1/sqrt(fan_in)) from our generator; with a k-WTA input
    # only input_density * fan_in inputs are non-zero (Numenta's sparse Kaiming init)
    _uniform_(layer.weight, layer.in_features * input_density, generator)
    _uniform_(layer.bias, layer.in_features * input_density, generator)


def build_model(
    name: str,
    input_size: int,
    output_size: int,
    hidden_sizes: Sequence[int],
    n_segments: int,
    context_dim: int,
    kw_percent_on: float = 0.05,
    variant: str = "absolute_max",
    boost_strength: float = 0.0,
    k_inference_factor: float = 1.0,
    context_density: float = 1.0,
    dendrite_init_gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """One of :data:`MODELS`, all with the same hidden sizes.

    k-WTA defaults (no boosting, the same k at inference) are those of Numenta's
    ``DendriticMLP``.
    """
    kw = {"boost_strength": boost_strength, "k_inference_factor": k_inference_factor,
          "generator": generator}
    if name == "dendritic":
        return DendriticMLP(input_size, output_size, hidden_sizes, n_segments, context_dim,
                            kw_percent_on, variant, context_density=context_density,
                            dendrite_init_gain=dendrite_init_gain, **kw)
    if name == "mlp":
        return MLP(input_size, output_size, hidden_sizes, generator=generator)
    if name == "mlp_kwta":
        return MLP(input_size, output_size, hidden_sizes, kw_percent_on, **kw)
    if name == "mlp_kwta_context":
        return MLP(input_size, output_size, hidden_sizes, kw_percent_on, context_dim, True, **kw)
    raise ValueError(f"model: expected one of {MODELS}, got {name!r}")


def mlp_parameter_count(input_size: int, output_size: int, hidden_sizes: Sequence[int]) -> int:
    """Trainable parameters of :class:`MLP` (weights and biases of every layer and the head)."""
    sizes = [int(input_size), *[int(h) for h in hidden_sizes], int(output_size)]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def parameter_matched_hidden_sizes(
    n_parameters: int, hidden_sizes: Sequence[int], input_size: int = 64, output_size: int = 10
) -> list[int]:
    """Hidden sizes of an MLP with about ``n_parameters`` parameters.

    Every hidden layer is widened by the same factor (the shape of ``hidden_sizes`` is kept),
    the factor chosen so that :func:`mlp_parameter_count` is closest to ``n_parameters``:
    the control that asks whether a dendritic network wins by its extra segment weights.

    Raises
    ------
    ValueError
        If ``n_parameters`` is smaller than an MLP with one unit per hidden layer.
    """
    hidden = [int(h) for h in hidden_sizes]
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden_sizes: expected positive sizes, got {list(hidden_sizes)}")
    smallest = mlp_parameter_count(input_size, output_size, [1] * len(hidden))
    if n_parameters < smallest:
        raise ValueError(
            f"n_parameters: expected >= {smallest} (one unit per hidden layer), got {n_parameters}"
        )

    def widths(c: float) -> list[int]:
        return [max(1, int(round(c * h))) for h in hidden]

    lo, hi = 0.0, 1.0
    while mlp_parameter_count(input_size, output_size, widths(hi)) < n_parameters:
        hi *= 2.0
    for _ in range(60):  # the count grows monotonically with the factor
        mid = 0.5 * (lo + hi)
        if mlp_parameter_count(input_size, output_size, widths(mid)) < n_parameters:
            lo = mid
        else:
            hi = mid
    best = min((widths(lo), widths(hi)), key=lambda w: abs(
        mlp_parameter_count(input_size, output_size, w) - n_parameters))
    return best


@dataclass
class ContinualResult:
    """What :func:`run_continual` measured for one network.

    Attributes
    ----------
    model : str
    accuracy_matrix : ndarray, shape (n_tasks, n_tasks)
        ``R[i, j]``: test accuracy on task ``j`` after training on tasks ``0..i``.
    trace_steps : ndarray of int, shape (n_evals,)
        Global optimiser step of each continual evaluation.
    trace_task : ndarray of int, shape (n_evals,)
        Task being learned at that step.
    trace_accuracy : ndarray, shape (n_evals, n_tasks)
        Test accuracy on every task at that step (NaN for tasks not yet seen).
    context_accuracy : float
        Fraction of test samples whose context was inferred correctly (1 for one-hot).
    n_parameters : int
        Trainable parameters (masked weights included).
    """

    model: str
    accuracy_matrix: np.ndarray
    trace_steps: np.ndarray
    trace_task: np.ndarray
    trace_accuracy: np.ndarray
    context_accuracy: float
    n_parameters: int
    metrics: dict = field(default_factory=dict)

    def seen_accuracy(self) -> np.ndarray:
        """Mean accuracy over tasks ``0..i`` after task ``i``, shape (n_tasks,)."""
        R = self.accuracy_matrix
        return np.array([R[i, : i + 1].mean() for i in range(len(R))])

    def forgetting(self) -> float:
        """Mean over ``j < T-1`` of ``max_i R[i, j] - R[T-1, j]`` (0 for one task)."""
        R = self.accuracy_matrix
        T = len(R)
        if T < 2:
            return 0.0
        return float(np.mean([R[j:T - 1, j].max() - R[T - 1, j] for j in range(T - 1)]))

    def stability_gap(self) -> float:
        """Mean transient drop of old tasks while a new task is learned (De Lange 2023)."""
        R, gaps = self.accuracy_matrix, []
        for t in range(1, len(R)):
            during = self.trace_accuracy[self.trace_task == t]
            for j in range(t):
                gaps.append(R[t - 1, j] - np.nanmin(during[:, j]))
        return float(np.mean(gaps)) if gaps else 0.0


def _contexts(data: PermutedDigits, kind: str) -> tuple[np.ndarray, Callable]:
    """Per-task context vectors (n_tasks, dim) and a test-time context function."""
    T = data.n_tasks
    if kind == "onehot":
        table = np.eye(T, dtype=np.float32)

        def infer(X: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
            return np.repeat(table[t : t + 1], len(X), axis=0), np.full(len(X), t)

        return table, infer
    if kind == "prototype":
        table = np.stack([data.task(t)[0].mean(axis=0) for t in range(T)]).astype(np.float32)

        def infer(X: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
            d2 = ((X[:, None, :] - table[None]) ** 2).sum(-1)
            guess = d2.argmin(axis=1)
            return table[guess], guess

        return table, infer
    raise ValueError(f"context: expected one of {CONTEXTS}, got {kind!r}")


def run_continual(
    data: PermutedDigits,
    model: str = "dendritic",
    hidden_sizes: Sequence[int] = (256, 256),
    n_segments: int | None = None,
    kw_percent_on: float = 0.05,
    variant: str = "absolute_max",
    context: str = "prototype",
    epochs_per_task: int = 3,
    batch_size: int = 64,
    lr: float = 5e-4,
    eval_every: int = 5,
    boost_strength: float = 0.0,
    k_inference_factor: float = 1.0,
    dendrite_init_gain: float = 1.0,
    random_state: int = 0,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> ContinualResult:
    """Train one network on the tasks of ``data`` in sequence and evaluate it continually.

    Adam (one optimiser for the whole sequence), cross-entropy on the shared 10-way head;
    k-WTA boost strength decays by 0.9 per epoch (Numenta's schedule).

    Parameters
    ----------
    data : PermutedDigits
    model : {"dendritic", "mlp", "mlp_kwta", "mlp_kwta_context"}
    hidden_sizes : sequence of int
        The same for every model.
    n_segments : int, optional
        Segments per unit; defaults to the number of tasks (as Numenta does).
    kw_percent_on : float
        Fraction of k-WTA winners.
    variant : {"bias", "sigmoid", "absolute_max"}
        Dendritic modulation.
    context : {"onehot", "prototype"}
        See the module docstring.
    epochs_per_task, batch_size : int
    lr : float
        Adam learning rate.
    eval_every : int
        Optimiser steps between continual evaluations (for the stability gap).
    boost_strength, k_inference_factor : float
        k-WTA settings (see :class:`~neurosim.dendrites.layers.KWinners`); the defaults
        (0 and 1) are those of Numenta's ``DendriticMLP``.
    dendrite_init_gain : float
        See :class:`DendriticMLP`.
    random_state : int
        Seeds initial weights, masks and batch order.
    progress : callable, optional
        Wraps the task loop (e.g. ``run.progress``).

    Returns
    -------
    ContinualResult
    """
    if model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
    if context not in CONTEXTS:
        raise ValueError(f"context: expected one of {CONTEXTS}, got {context!r}")
    for name, value in [("epochs_per_task", epochs_per_task), ("batch_size", batch_size),
                        ("eval_every", eval_every)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    T = data.n_tasks
    gen = torch.Generator().manual_seed(int(random_state))
    table, infer = _contexts(data, context)
    net = build_model(
        model, 64, 10, list(hidden_sizes), n_segments or T, table.shape[1], kw_percent_on,
        variant, boost_strength, k_inference_factor, float((table != 0).mean()),
        dendrite_init_gain, generator=gen,
    )
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    rank, world = ddp.world()  # under torchrun / accelerate launch: data-parallel steps
    loss_sum = nn.CrossEntropyLoss(reduction="sum")

    # test sets and their (possibly inferred) contexts, fixed once
    tests, hits = [], 0
    for t in range(T):
        X, y = data.task(t, "test")
        ctx, guess = infer(X, t)
        hits += int((guess == t).sum())
        tests.append((torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(ctx)))
    context_accuracy = hits / sum(len(y) for _, y, _ in tests)

    @torch.no_grad()
    def evaluate(upto: int) -> np.ndarray:
        net.eval()
        acc = np.full(T, np.nan)
        for j in range(upto + 1):
            X, y, ctx = tests[j]
            acc[j] = (net(X, ctx).argmax(1) == y).float().mean().item()
        net.train()
        return acc

    R = np.zeros((T, T))
    steps, tasks, trace = [], [], []
    step = 0
    task_iter = range(T) if progress is None else progress(range(T))
    net.train()
    for t in task_iter:
        X, y = data.task(t, "train")
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        ctx = torch.from_numpy(table[t]).expand(len(X), -1)
        for _ in range(epochs_per_task):
            order = torch.randperm(len(X), generator=gen)
            for start in range(0, len(X), batch_size):
                idx = order[start : start + batch_size]
                opt.zero_grad()
                if world == 1:
                    loss = loss_fn(net(X[idx], ctx[idx]), y[idx])
                    loss.backward()
                else:  # this rank's slice; the summed gradients are the whole batch's
                    part, before = idx[ddp.shard(len(idx), rank, world)], ddp.snapshot_buffers(net)
                    loss = loss_sum(net(X[part], ctx[part]), y[part]) / len(idx)
                    loss.backward()
                    ddp.all_reduce_gradients(net.parameters(), world)
                    ddp.sync_buffers(net, before, world)
                opt.step()
                step += 1
                if t > 0 and step % eval_every == 0:
                    steps.append(step)
                    tasks.append(t)
                    trace.append(evaluate(t - 1))
            for m in net.modules():
                if isinstance(m, KWinners):
                    m.update_boost_strength()
        acc = evaluate(t)
        R[t, : t + 1] = acc[: t + 1]  # unseen tasks stay 0 in R
        steps.append(step)
        tasks.append(t)
        trace.append(acc)
    trace_acc = np.array(trace) if trace else np.zeros((0, T))
    result = ContinualResult(
        model=model,
        accuracy_matrix=R,
        trace_steps=np.array(steps),
        trace_task=np.array(tasks),
        trace_accuracy=trace_acc,
        context_accuracy=float(context_accuracy),
        n_parameters=sum(p.numel() for p in net.parameters()),
    )
    seen = result.seen_accuracy()
    result.metrics = {
        "final_accuracy_all_tasks": float(seen[-1]),
        "forgetting": result.forgetting(),
        "stability_gap": result.stability_gap(),
        "context_accuracy": result.context_accuracy,
        "n_parameters": result.n_parameters,
    }
    return result
