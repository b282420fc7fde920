"""camfields: neural fields with coordinate-aware modulation. Pure Python install."""

from setuptools import find_packages, setup

setup(
    name="camfields",
    version="0.1.0",
    description="Neural fields with coordinate-aware modulation (CAM): images, NeRF, dynamic scenes, video",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["camfields", "camfields.*"]),
    install_requires=[
        "torch>=2.1",
        "numpy",
        "imageio>=2.28",
        "tqdm",
        "tensorboard",
        "lpips",
        "pytorch-msssim",  # SSIM / MS-SSIM from a maintained library
        "scikit-image",  # ships the embedded default image (public-domain astronaut photo)
        "dacite",  # strict typed configs from TOML
        "tomli; python_version < '3.11'",
    ],
    extras_require={"test": ["pytest>=7"]},
)
