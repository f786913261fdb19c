"""jaxloss: loss functions for JAX with hand-derived, verified derivative rules."""

from jaxloss import reduce as reduce
from jaxloss.gradients import check_gradients as check_gradients
from jaxloss.regression import absolute_error as absolute_error
from jaxloss.regression import huber_loss as huber_loss
from jaxloss.regression import log_cosh as log_cosh
from jaxloss.regression import smooth_l1_loss as smooth_l1_loss
from jaxloss.regression import squared_error as squared_error

__version__ = "0.1.0"
