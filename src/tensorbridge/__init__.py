"""tensorbridge: NumPy <-> PyTorch conversion with an explicit dtype policy and
explicit copy-vs-share semantics.

>>> import numpy as np, tensorbridge as tb
>>> tb.to_tensor(np.arange(3.0)).dtype      # floating data becomes float32
torch.float32
"""

from ._collate import collate as collate
from ._convert import convert_like as convert_like
from ._convert import shares_memory as shares_memory
from ._convert import to_numpy as to_numpy
from ._convert import to_tensor as to_tensor
from ._dtypes import FLOAT32 as FLOAT32
from ._dtypes import PRESERVE as PRESERVE
from ._dtypes import DtypePolicy as DtypePolicy
from ._errors import CastingError as CastingError
from ._errors import InvalidArgumentError as InvalidArgumentError
from ._errors import InvalidInputError as InvalidInputError
from ._errors import ShareError as ShareError
from ._errors import TensorBridgeError as TensorBridgeError
from ._errors import UnsupportedDtypeError as UnsupportedDtypeError
from ._prefetch import prefetch as prefetch
from ._transfer import pinned_memory_budget as pinned_memory_budget
from ._transfer import pinned_memory_in_use as pinned_memory_in_use
from ._transfer import set_pinned_memory_budget as set_pinned_memory_budget
from ._tree import tree_to_numpy as tree_to_numpy
from ._tree import tree_to_tensor as tree_to_tensor
from ._version import __version__ as __version__

__all__ = [
    "FLOAT32",
    "PRESERVE",
    "CastingError",
    "DtypePolicy",
    "InvalidArgumentError",
    "InvalidInputError",
    "ShareError",
    "TensorBridgeError",
    "UnsupportedDtypeError",
    "__version__",
    "collate",
    "convert_like",
    "pinned_memory_budget",
    "pinned_memory_in_use",
    "prefetch",
    "set_pinned_memory_budget",
    "shares_memory",
    "to_numpy",
    "to_tensor",
    "tree_to_numpy",
    "tree_to_tensor",
]
