"""Hardware cost predictors: cross-device meta-predictor, hardware embeddings, per-device models.

A *target* is a device configuration (``cpu-1a2b3c4d/cpu/t1/b1``), an external device imported
from a CSV, or one of the 27 NB201 reference device configurations shipped in
:mod:`hilnas.pipeline.refdata`. Its *embedding* for a metric (``latency_ms`` or ``energy_mj``) is
its values on the 10 reference architectures of the space (``space.reference_architectures()``),
min-max normalised among themselves; the raw values are kept so predictions come out in ms / mJ.

The meta-predictor (:class:`MetaPredictor`) is a hierarchical (empirical-Bayes) linear cost model
on differentiable architecture features (:mod:`hilnas.pipeline.predictors.features`):

    cost(a, d) = s_d * phi(a) . w_d,      s_d = mean of d's 10 reference values,
    w_d ~ mixture of N(w_k, c Sigma) over training devices k and N(mean_k w_k, Sigma)

The training devices' weights ``w_k`` and their covariance ``Sigma`` are learned across devices
(the noise level and kernel scale are averaged over by marginal likelihood). For a target
it conditions on the 10 reference measurements (zero-shot) and on any further measurements
(few-shot): the posterior mean of ``w_d`` is a closed-form, differentiable function of the support
set, so ``predict`` is differentiable in the architecture encoding. Costs are additive over the
operations of a network, which is why the model works in linear (not log) space; the benchmark
in :mod:`hilnas.pipeline.benchmarks.predictors` compares the alternatives.

Promises:
- ``predict`` returns strictly positive values in the target's units; it never trains.
- The floor: no architecture, connected or not, is ever predicted below ``FLOOR_SHARE`` (0.8)
  times the smallest value measured on the target that the prediction was given (its 10
  reference values and any further measurements; :func:`cost_floor`). Every network of every
  space pays for its skeleton (NB201: the stem, the two residual reductions, the head), also
  when its cells compute nothing, so the cheapest network measured there bounds what any other
  can cost. The bound is smooth (differentiable in the architecture) and needs nothing from the
  space but the measured values, so it holds unchanged for every registered space.
- A target whose measured values are all equal (within ``FLAT_SPREAD``, 1 %) carries no ranking
  information: it is predicted flat, at its median value, for every architecture (a degenerate
  front: on that device the architectures cannot be told apart by cost), and
  :func:`embedding_for` logs a warning saying so and what to measure (:func:`flat_warning`).
- Trained weights are safetensors + a JSON metadata file holding the training-data fingerprint
  (reference-data sha256, device list, seed, hyper-parameters, hilnas version, sha256 of the
  tensor file); loading checks all of it and raises :class:`PredictorFingerprintError` on a
  mismatch. No pickles are read.
- Training is deterministic for a seed on CPU.
"""

# The package's modules: errors, embedding (targets and their hardware embeddings, the floor),
# meta (the meta-predictor: model, training, save/load), metrics, features (architecture
# features), device (per-device models), learning (predictors that keep learning, intervals,
# active selection), io (measurement CSVs, imports, predictions) and space (the space-generic
# cross-device predictor of ofa_mbv3 and gpt_s). The names below are the public API.
from hilnas.pipeline.predictors.embedding import (
    FLAT_SPREAD,
    FLOOR_SHARE,
    METRICS,
    NETWORKS,
    SPACE,
    TargetEmbedding,
    _space,
    canonical_values,
    cost_floor,
    embedding_for,
    embedding_from_table,
    flat_warning,
    hilnas_version,
    is_flat,
    normalize_embedding,
    reference_codes,
    reference_strings,
    reference_targets,
    resolve_local_alias,
)
from hilnas.pipeline.predictors.errors import (
    MissingReferenceError,
    NoEmbeddingError,
    PredictorError,
    PredictorFingerprintError,
)
from hilnas.pipeline.predictors.features import (
    BLOCK_SIZES,
    FEATURE_SETS,
    arch_features,
    feature_dim,
    features_np,
    one_hot_codes,
)
from hilnas.pipeline.predictors.meta import (
    DATA_DIR,
    DEFAULT_HYPER,
    FORMAT_VERSION,
    MIN_FULL_FIT,
    MetaPredictor,
    TrainingTarget,
    _atomic_write,
    load_meta_predictor,
    read_meta_predictor,
    refdata_training_targets,
    save_meta_predictor,
    shipped_weights_path,
    store_training_targets,
    train_meta_predictor,
    user_weights_path,
)
from hilnas.pipeline.predictors.metrics import (
    kendall,
    quality,
    spearman,
    within,
)

__all__ = [
    "BLOCK_SIZES",
    "DATA_DIR",
    "DEFAULT_HYPER",
    "FEATURE_SETS",
    "FLAT_SPREAD",
    "FLOOR_SHARE",
    "FORMAT_VERSION",
    "METRICS",
    "MIN_FULL_FIT",
    "MetaPredictor",
    "MissingReferenceError",
    "NETWORKS",
    "NoEmbeddingError",
    "PredictorError",
    "PredictorFingerprintError",
    "SPACE",
    "TargetEmbedding",
    "TrainingTarget",
    "_atomic_write",
    "_space",
    "arch_features",
    "canonical_values",
    "cost_floor",
    "embedding_for",
    "embedding_from_table",
    "feature_dim",
    "features_np",
    "flat_warning",
    "hilnas_version",
    "is_flat",
    "kendall",
    "load_meta_predictor",
    "normalize_embedding",
    "one_hot_codes",
    "quality",
    "read_meta_predictor",
    "refdata_training_targets",
    "reference_codes",
    "reference_strings",
    "reference_targets",
    "resolve_local_alias",
    "save_meta_predictor",
    "shipped_weights_path",
    "spearman",
    "store_training_targets",
    "train_meta_predictor",
    "user_weights_path",
    "within",
]
