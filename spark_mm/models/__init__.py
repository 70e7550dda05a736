"""The SparK algorithm: the model (:mod:`.spark`), the sparse encoder made
from any dense CNN (:mod:`.sparse`), densify step, decoder, reconstruction
head, mask generator and backbone probing. It imports nothing from
:mod:`.fast`, the speed work, which plugs into it (``SparK(fast_path=...)``)."""
from .decoder import LightUNetDecoder
from .densify import Densifier
from .head import SparKReconstructionHead, patchify, unpatchify
from .mask_generator import RandomPatchMasker
from .norms import build_norm
from .spark import SparK
from .sparse import SparseContext, UnsupportedLayerError, sparsify

__all__ = ['SparK', 'LightUNetDecoder', 'Densifier', 'SparKReconstructionHead',
           'RandomPatchMasker', 'SparseContext', 'sparsify',
           'UnsupportedLayerError', 'build_norm', 'patchify', 'unpatchify']
