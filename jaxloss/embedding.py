"""Embedding and metric-learning losses on vectors ``[..., D]``: pairs, triplets and in-batch
triplet mining.

Each returns one loss per example (per pair, triplet or anchor), the feature axis (the last)
reduced.  Distances are Euclidean unless an option says otherwise; at a distance of exactly 0
the hand rules return the minimum-norm subgradient (0 for ``d``'s direction), so gradients are
finite where the classic formulas give NaN.  Every function supports ``jit``, ``vmap``,
forward and reverse mode, ``jax.hessian`` and forward-over-reverse Hessian-vector products;
``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss import _math
from jaxloss.gradients import hand_derivative, tangent_sum

# ------------------------------------------------------------------ pair and triplet losses


# ------------------------------------------------------------------ batch_triplet_loss
