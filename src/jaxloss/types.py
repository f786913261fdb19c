"""The type aliases of jaxloss's signatures.

Shapes and dtypes are not in the types: each function's docstring gives them in its
``Args`` (``[N, C]`` float logits, ``[N]`` integer ids...), checked at trace time.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeAlias

import jax
import numpy as np
from jax.typing import ArrayLike

__all__ = ["Array", "ArrayLike", "Axis", "AxisName", "Precision"]

#: An array argument (inputs, targets, ids, masks): a JAX array (traced under ``jit``) or a NumPy array.
Array: TypeAlias = jax.Array | np.ndarray
#: A float option (margin, temperature...): a Python or NumPy scalar, or an array (traced under ``jit``).
ArrayLike = ArrayLike
#: The axis (or axes) a loss reduces: an int, or where the loss says so a tuple of ints or None (all).
Axis: TypeAlias = int | tuple[int, ...] | None
#: The name of a mapped axis (``shard_map``, ``pmap``, ``vmap``) the loss reduces over with collectives.
AxisName: TypeAlias = Hashable
#: ``precision=`` of the loss's matrix products: a :class:`jax.lax.Precision`, a string or None.
Precision: TypeAlias = jax.lax.PrecisionLike
