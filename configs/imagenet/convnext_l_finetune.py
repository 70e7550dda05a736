# Short name of convnext-l_spark-ft_8xb512-adamw-coslr-200e_in1k.py
_base_ = ['convnext-l_spark-ft_8xb512-adamw-coslr-200e_in1k.py']
