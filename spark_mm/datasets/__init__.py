from .checks import check_data_roots
from .data_root import set_data_root, use_annotation_classes
from .image_folder import (UnlabeledImageFolder, check_image_folder,
                           scan_image_folder)
from .robust_loading import LoadImageChannels, LoadImageOrSkip, to_channels
from .synthetic import (SparKDemoImages, SparKDemoLabelledImages,
                        make_demo_images, make_labelled_folder,
                        make_synthetic_coco)

__all__ = ['SparKDemoImages', 'SparKDemoLabelledImages', 'make_demo_images',
           'make_labelled_folder', 'check_data_roots', 'LoadImageOrSkip',
           'LoadImageChannels', 'to_channels', 'make_synthetic_coco',
           'UnlabeledImageFolder', 'check_image_folder', 'scan_image_folder',
           'set_data_root', 'use_annotation_classes']
