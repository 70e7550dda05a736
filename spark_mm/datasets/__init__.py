from .checks import check_data_roots
from .data_root import set_data_root, use_annotation_classes
from .demo_images import SparkDemoImages, make_demo_images
from .image_folder import (UnlabeledImageFolder, check_image_folder,
                           scan_image_folder)
from .robust_loading import LoadImageChannels, LoadImageOrSkip, to_channels
from .synthetic_coco import make_synthetic_coco

__all__ = ['SparkDemoImages', 'make_demo_images', 'check_data_roots',
           'LoadImageOrSkip', 'LoadImageChannels', 'to_channels',
           'make_synthetic_coco', 'UnlabeledImageFolder', 'check_image_folder',
           'scan_image_folder', 'set_data_root', 'use_annotation_classes']
