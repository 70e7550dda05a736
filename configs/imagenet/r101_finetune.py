# Short name of resnet101_spark-ft_8xb512-lamb-coslr-300e_in1k.py
_base_ = ['resnet101_spark-ft_8xb512-lamb-coslr-300e_in1k.py']
