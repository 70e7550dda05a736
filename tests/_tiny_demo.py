# configs/spark/demo_r18.py without the reconstruction pictures (slow in tests),
# keeping the safety hooks the reliability tests exercise.
_base_ = ['../configs/spark/demo_r18.py']
custom_hooks = [dict(type='NanGuardHook'), dict(type='StepSeedHook'),
                dict(type='PreemptionHook')]
