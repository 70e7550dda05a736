"""Pictures of SparK reconstructions (tools/visualize_reconstruction.py and
``ReconstructionVisualizationHook``)."""
from .reconstruction import (BACKGROUND, HEADER, MASK_GREY, PAD, PANEL_TITLES,
                             denormalize, fit_image, fixed_mask, grid_size,
                             load_image, make_grid, panel_box,
                             reconstruction_grid, reconstruction_panels,
                             save_png, to_model_inputs)

__all__ = ['BACKGROUND', 'HEADER', 'MASK_GREY', 'PAD', 'PANEL_TITLES',
           'denormalize', 'fit_image', 'fixed_mask', 'grid_size',
           'load_image', 'make_grid', 'panel_box', 'reconstruction_grid',
           'reconstruction_panels', 'save_png', 'to_model_inputs']
