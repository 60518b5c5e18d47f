"""lsvr: large-scale visual recognition, the AlexNet system of Ding et al. (2014) in modern PyTorch."""

__version__ = "0.1.0"
