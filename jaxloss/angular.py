"""Angular-margin losses: softmax over scaled cosines to class centres or speaker centroids.

ArcFace, CosFace and SphereFace (the combined margin of InsightFace) classify L2-normalised
embeddings against L2-normalised class centres; GE2E (generalized end-to-end) does the same
against per-speaker centroids of the batch.  Each returns one loss per embedding.  No ``acos``
is taken: margins on the angle go through cos/sin identities, so values and gradients stay
finite at cos θ = ±1.  Every function supports ``jit``, ``vmap``, forward and reverse mode,
``jax.hessian`` and forward-over-reverse Hessian-vector products; ``fn.reference`` is plain
autodiff of the formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss import _math
from jaxloss.gradients import hand_derivative, tangent_sum

# ------------------------------------------------------------------ angular margins (ArcFace family)


# ------------------------------------------------------------------ ge2e_loss
