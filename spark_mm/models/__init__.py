from .decoder import LightUNetDecoder
from .densify import Densifier
from .head import SparKReconstructionHead, patchify, unpatchify
from .mask_generator import RandomPatchMasker
from .norms import build_norm
from .sparse import SparseContext, UnsupportedLayerError, sparsify
from .spark import SparK

__all__ = ['SparK', 'LightUNetDecoder', 'Densifier', 'SparKReconstructionHead',
           'RandomPatchMasker', 'SparseContext', 'sparsify',
           'UnsupportedLayerError', 'build_norm', 'patchify', 'unpatchify']
