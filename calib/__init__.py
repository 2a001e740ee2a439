"""INT8 calibration: calibration sets from domain data and explicit Q/DQ quantization.

Importable as `gkd_deploy.calib`; depends only on `gkd_deploy`.
"""
