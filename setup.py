"""Package definition for sedona-runtime: greedy block-wise training and the SEDONA search."""
from setuptools import find_packages, setup

setup(
    name="sedona-runtime",
    version="0.1.0",
    description="Pipeline-parallel greedy block-wise training and the SEDONA decoupling search",
    packages=find_packages(include=["sedona_runtime", "sedona_runtime.*"]),
    package_data={"sedona_runtime.decoupling": ["shipped/*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.2",
        "torchvision>=0.17",
        "higher>=0.2.1",
        "numpy>=1.24",
        "psutil>=5.9",
        "rich>=13.0",
        # The embedded default data set (8x8 digits) ships inside scikit-learn.
        "scikit-learn>=1.3",
    ],
    extras_require={
        "plot": ["matplotlib>=3.7"],
        # --tensorboard: event files of every metric (train, launch/greedy.py); read with `tensorboard --logdir`.
        "tensorboard": ["tensorboard>=2.12"],
        "dev": ["matplotlib>=3.7", "pytest>=7.4", "pytest-timeout>=2.2"],
    },
)
