from .checks import check_data_roots
from .demo_images import SparkDemoImages, make_demo_images

__all__ = ['SparkDemoImages', 'make_demo_images', 'check_data_roots']
