"""Hardware cost predictors: hardware embeddings, the cross-device meta-predictor, per-device
models, predictors that keep learning, and the space-generic cross-device predictor.

A *target* is a device configuration (``cpu-1a2b3c4d/cpu/t1/b1``), an external device imported
from a CSV, or a reference device configuration of a space (NB201's 27 in
:mod:`hilnas.pipeline.refdata`). Its *embedding* for a metric is its values on the space's
reference architectures; every predictor here conditions on it.

Modules:

- :mod:`~hilnas.pipeline.predictors.errors`: the errors (each names the problem and the fix).
- :mod:`~hilnas.pipeline.predictors.embedding`: targets' embeddings, the physical floor
  (:func:`cost_floor`) and flat targets.
- :mod:`~hilnas.pipeline.predictors.meta`: NB201's cross-device meta-predictor
  (:class:`MetaPredictor`): the model, its promises, training, save and load.
- :mod:`~hilnas.pipeline.predictors.features`: NB201's differentiable architecture features.
- :mod:`~hilnas.pipeline.predictors.device`: per-device models chosen by cross-validation
  (``hilnas fit``).
- :mod:`~hilnas.pipeline.predictors.learning`: predictors that keep learning from a device's
  measurements, calibrated intervals, imputed references and active selection.
- :mod:`~hilnas.pipeline.predictors.io`: measurement CSVs, device imports, predictions and
  their intervals (``hilnas predict``).
- :mod:`~hilnas.pipeline.predictors.space`: the cross-device predictor of the other spaces
  (ofa_mbv3, gpt_s).
- :mod:`~hilnas.pipeline.predictors.metrics`: Spearman, Kendall, share within a tolerance.

The names re-exported below are the public API of errors, embedding, meta, features and
metrics.
"""

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
