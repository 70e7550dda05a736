from .batch_norm import SparseBatchNormMixin
from .context import SparseContext
from .convert import UnsupportedLayerError, refuse_unsupported, sparsify
from .remask import SparseMixin, SparseRemaskMixin

__all__ = ['SparseContext', 'sparsify', 'refuse_unsupported',
           'UnsupportedLayerError', 'SparseMixin', 'SparseRemaskMixin',
           'SparseBatchNormMixin']
