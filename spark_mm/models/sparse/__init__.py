from .batch_norm import SparseBatchNormMixin
from .context import SparseContext
from .convert import UnsupportedLayerError, sparsify
from .remask import SparseMixin, SparseRemaskMixin

__all__ = ['SparseContext', 'sparsify', 'UnsupportedLayerError', 'SparseMixin',
           'SparseRemaskMixin', 'SparseBatchNormMixin']
