"""Dataset sources behind :func:`course_lib.data.load_dataset` (the entry point).

``_common`` (data directory, errors, idx reader), ``real`` (MNIST, Fashion-MNIST, CIFAR-10,
faces), ``remote`` (checksummed downloads with pooch), ``synthetic`` (Gaussian field, two-tone,
scikit-learn digits, natural-image patches).
"""
