"""Input checks of the objectives, for code built on them.

The same trace-time checks every objective runs (dtype, rank, NaN/Inf when
the value is concrete, positive hyperparameters), each raising a
``ValueError`` that names the argument, so that algorithms layered on the
objectives (k-means fits, estimators) report bad input the same way.
"""

from objectives._checks import float_array
from objectives._checks import int_array
from objectives._checks import positive
from objectives._checks import positive_int

__all__ = ["float_array", "int_array", "positive", "positive_int"]
