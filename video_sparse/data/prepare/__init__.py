"""Offline data preparation, run once by the tools before training: frame extraction
(``frames``), list files from Kinetics/SSv2 annotations (``annotations``) or from class folders
(``folders``), and Fashion-MNIST in the VTAB-1K layout (``fashion_mnist``).

Nothing here is imported by the training or test code paths.
"""
