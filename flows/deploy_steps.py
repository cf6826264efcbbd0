"""Prefect pull steps for hilnas deployments (referenced from flows/prefect.yaml).

No torch, no network: a worker host only needs hilnas installed (from a checkout with
``pip install -e .`` or from a wheel).
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT_ENV = "HILNAS_CHECKOUT"


def hilnas_root() -> Path:
    """The directory holding ``flows/`` of the running hilnas: the checkout for an editable
    install, the package directory otherwise; ``HILNAS_CHECKOUT`` overrides it."""
    env = os.environ.get(CHECKOUT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    import hilnas.flows

    return Path(hilnas.flows.__file__).resolve().parent.parent


def enter_hilnas_root() -> dict[str, str]:
    """Pull step: change into the hilnas checkout; the flows load by module path from there."""
    root = hilnas_root()
    if not (root / "flows").is_dir():
        raise RuntimeError(
            f"{root} holds no hilnas flows/ directory; set {CHECKOUT_ENV} to the hilnas checkout "
            "on this host or install hilnas there (`pip install 'hilnas[agent]'`)"
        )
    os.chdir(root)
    return {"directory": str(root)}
