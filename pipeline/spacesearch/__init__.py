"""Search beyond NB201: the MetaHypernetwork, baselines and oracle problems for any registered space."""
