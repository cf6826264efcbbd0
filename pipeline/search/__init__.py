"""One search, Pareto fronts for every device: the MetaHypernetwork search (MODNAS).

``run_search(SearchConfig(...))`` trains a :class:`~hilnas.pipeline.hypernet.MetaHypernetwork`
``H(r, h) -> architecture logits`` and saves it with its settings under
``HILNAS_HOME/search/<run-id>/`` (a ``latest`` file names the newest run).
``TrainedSearch.load(path).front(target, points=K)`` then returns, for any target with a hardware
embedding (a training device, a device profiled or imported after the search: zero-shot), the
architectures the hypernetwork picks over a sweep of preferences, with predicted objectives,
non-dominated filtered.

One training step (``docs/method.md``), for every training target ``d``:
1. draw preferences ``r`` (``preferences_per_target`` of them): a flat Dirichlet, half of them
   (``front_preferences``) replaced by preferences aimed at points of ``d``'s predicted front
   (see :class:`_PreferenceSampler`); ``alpha = H(r, h_d)``; sample a hard one-hot
   architecture ``a`` from ``alpha`` (ReinMax or GDAS, straight-through; the logits the sampler
   sees are standardised and scaled, annealed 2 -> 4, so sampling keeps exploring);
2. costs: the error term and, for each hardware objective, the frozen meta-predictor's cost
   ``P(a, h_d)``, each normalised to [0, 1] by its predicted min/max over the whole space for
   that target (the error as the modes say);
3. ``loss_d`` = scalarisation of the costs by ``r`` (``linear``: ``r . c``; ``tchebycheff``,
   the default: a smooth maximum of ``r_m (c_m + eps)`` in log space, which also reaches the
   non-convex parts of a front); ``g_d`` = gradient of ``loss_d`` for the hypernetwork's
   parameters, normalised.
The hypernetwork gradient is the min-norm point of the convex hull of the ``g_d``
(:func:`hilnas.pipeline.mo.min_norm_solver`, multiple gradient descent), applied with Adam.

Reading a front (:meth:`TrainedSearch.front`): the hypernetwork's argmax architecture for each
preference of the sweep and, when the objectives are cheap to predict (surrogate mode), a
greedy refinement of it on the same predicted, scalarised objectives plus the architectures
that refinement evaluated; the non-dominated ones on the predicted objectives are returned.

Two ways to get the error term, the same code path otherwise:

- ``surrogate`` (NB201 benchmarks, seconds on a CPU): a differentiable accuracy model
  (:mod:`hilnas.pipeline.surrogate`) fit on ``accuracy_queries`` architectures whose true
  CIFAR-10 accuracy is read from the reference table. Accuracy does not depend on the device,
  so the queries serve every device. They are chosen in rounds: a random half first, then,
  round by round, the architectures that the current surrogate and the predictors place on the
  predicted fronts of the most training targets (where the search needs accuracy to be right).
- ``supernet`` (real data): a weight-sharing NB201 supernet (:mod:`hilnas.pipeline.spaces.nb201.supernet`)
  trained on a dataset (digits by default, CIFAR-10 from a local directory). Two ways to use it
  (``supernet_error``):

  - ``surrogate`` (default): the supernet is trained first, alone, for ``supernet_epochs``
    with strict-fairness sampling (each weight step trains, on one batch, K architectures
    that together use every option of every edge once: FairNAS); its top-1 validation error
    is then the oracle that labels the ``accuracy_queries`` architectures (chosen in rounds as
    above) the surrogate is fit on, and training proceeds exactly as in surrogate mode. Fronts
    report the supernet's own validation error of each chosen architecture.
  - ``direct`` (MODNAS as written): the error term is the supernet's cross-entropy with the
    sampled architecture on a validation batch, straight-through to the logits, normalised by
    its range over a probe set of architectures re-measured every epoch (whose fronts also
    aim the preferences); the supernet's weights take an SGD step per training batch with
    architectures sampled from ``H`` (or, for a share ``uniform_share`` of the batches, at
    random, fairly), after ``warmup_epochs`` of random architectures only.

  Measured on digits (``python -m hilnas.pipeline.benchmarks.supernet``: 3 seeds, 13 MODNAS
  training devices plus the local CPU, 15 preferences per device): ``direct`` picks 1-4
  distinct architectures over the 15 preferences (often one for all of them), the likely
  reasons being that the straight-through error gradient of one sampled architecture per
  device and step is noisy next to the predictors' exact latency gradient, and that the
  hypernetwork's own samples get the most weight updates; ``surrogate`` picks about 11, and the
  measured latency of the chosen architectures rises with the weight on the error (Spearman
  0.98 on the 27 reference devices, 0.94 on the local CPU).

Where each part lives (every name is re-exported here, so ``from hilnas.pipeline.search import
X`` is the way to use them):

- :mod:`~hilnas.pipeline.search.config`: the objectives, :class:`SearchConfig` and its bounds,
  the error classes;
- :mod:`~hilnas.pipeline.search.progress`: :class:`SearchProgress` reports;
- :mod:`~hilnas.pipeline.search.scalarization`: :func:`scalarize`, :func:`preferences_for` and
  the training preference sampler;
- :mod:`~hilnas.pipeline.search.subsets`: :func:`spread_subset` (hypervolume subsets of a
  front);
- :mod:`~hilnas.pipeline.search.pool`: the candidate pool and the one-hot encoding;
- :mod:`~hilnas.pipeline.search.costs`: training targets, predicted hardware costs and their
  normalisation;
- :mod:`~hilnas.pipeline.search.queries`: the accuracy query rounds;
- :mod:`~hilnas.pipeline.search.hypernet_step`: one MGDA step of the hypernetwork;
- :mod:`~hilnas.pipeline.search.supernet_mode`: supernet training and the supernet error;
- :mod:`~hilnas.pipeline.search.training`: :func:`run_search`, the training loop;
- :mod:`~hilnas.pipeline.search.runs`: saved runs (files, :func:`resolve_run`, checks);
- :mod:`~hilnas.pipeline.search.trained`: :class:`TrainedSearch` and :class:`FrontPoint`.
"""

from __future__ import annotations

from hilnas.pipeline.search.config import (  # noqa: F401
    HARDWARE_OBJECTIVES,
    INT_BOUNDS,
    MAX_FRONT_POINTS,
    MODES,
    OBJECTIVE_ALIASES,
    OBJECTIVES,
    OPTIONAL_INTS,
    SCALARIZATIONS,
    SUPERNET_ERRORS,
    DamagedSearchError,
    SearchConfig,
    SearchError,
    SearchMismatchError,
    SearchNotFoundError,
    _bound_fix,
    _jsonable,
    parse_objectives,
)
from hilnas.pipeline.search.costs import (  # noqa: F401
    _costs,
    _embedding_vector,
    _hardware_embeddings,
    _HardwareCosts,
    _Normalizer,
    _predictor_fingerprint,
    _Target,
)
from hilnas.pipeline.search.hypernet_step import (  # noqa: F401
    _annealed_scale,
    _gram_factor,
    _hypernet_step,
    _min_norm_direction,
    _sampling_logits,
    _set_grads,
    _standardised_logits,
)
from hilnas.pipeline.search.pool import POOL_LIMIT, _onehot, _pool  # noqa: F401
from hilnas.pipeline.search.progress import ProgressCallback, SearchProgress, _report  # noqa: F401
from hilnas.pipeline.search.queries import _select_queries  # noqa: F401
from hilnas.pipeline.search.runs import (  # noqa: F401
    FORMAT,
    HYPERNET_FILE,
    LATEST,
    MAX_SETTINGS_BYTES,
    SETTINGS_FILE,
    SUPERNET_FILE,
    SURROGATE_FILE,
    _checked_settings,
    _load_weights,
    _read_pointer,
    _read_settings,
    _save_run,
    _state_dict_bytes,
    _write_pointer,
    one_line_error,
    resolve_run,
    search_root,
)
from hilnas.pipeline.search.scalarization import (  # noqa: F401
    COST_EPS,
    _fronts_and_sweep,
    _PreferenceSampler,
    preferences_for,
    scalarize,
)
from hilnas.pipeline.search.subsets import (  # noqa: F401
    _EXACT_SUBSET_WORK,
    _best_hypervolume_subset_2d,
    _greedy_hypervolume_subset_2d,
    spread_subset,
)
from hilnas.pipeline.search.supernet_mode import (  # noqa: F401
    PROBE_IMAGES,
    WEIGHT_CLIP,
    _random_archs,
    _supernet_oracle,
    _train_supernet_fair,
    _train_supernet_mode,
)
from hilnas.pipeline.search.trained import FrontPoint, TrainedSearch  # noqa: F401
from hilnas.pipeline.search.training import _torch_device, run_search  # noqa: F401

__all__ = [
    "OBJECTIVES",
    "FrontPoint",
    "SearchConfig",
    "SearchError",
    "SearchMismatchError",
    "SearchNotFoundError",
    "DamagedSearchError",
    "INT_BOUNDS",
    "MAX_FRONT_POINTS",
    "SearchProgress",
    "TrainedSearch",
    "parse_objectives",
    "resolve_run",
    "run_search",
    "scalarize",
    "search_root",
]
