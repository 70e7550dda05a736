# Short name of resnet50_spark-linear_8xb32-sgd-steplr-100e_in1k.py
_base_ = ['resnet50_spark-linear_8xb32-sgd-steplr-100e_in1k.py']
