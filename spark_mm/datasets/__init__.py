from .checks import check_data_roots
from .demo_images import SparkDemoImages, make_demo_images
from .robust_loading import LoadImageOrSkip
from .synthetic_coco import make_synthetic_coco

__all__ = ['SparkDemoImages', 'make_demo_images', 'check_data_roots',
           'LoadImageOrSkip', 'make_synthetic_coco']
