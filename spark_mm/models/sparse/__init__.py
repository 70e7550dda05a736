from .context import SparseContext
from .convert import UnsupportedLayerError, sparsify
from .layers import SparseBatchNormMixin, SparseMixin, SparseRemaskMixin

__all__ = ['SparseContext', 'sparsify', 'UnsupportedLayerError', 'SparseMixin',
           'SparseRemaskMixin', 'SparseBatchNormMixin']
