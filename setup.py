"""camfields: neural fields with coordinate-aware modulation.

``pip install .`` (or ``-e .``) is pure Python. The presets (``scenes/``) and the CUDA sources
(``cuda/``) stay at the top of the repository and install inside the package as
``camfields/_presets`` and ``camfields/_csrc``, so ``--config NAME`` and the just-in-time
build work in an installed package as in a checkout; ``camfields`` is the console command.
``CAMFIELDS_BUILD_CUDA=1 pip install --no-build-isolation -e .`` also builds the fused CUDA
extension ahead of time, with the settings of ``camfields/cuda_build.py`` (shared with the
just-in-time build).
"""

import importlib.util
import os

from setuptools import find_packages, setup


def cuda_extension_kwargs() -> dict:
    """ext_modules and cmdclass for the ahead-of-time CUDA build (needs torch and nvcc)."""
    spec = importlib.util.spec_from_file_location("cuda_build", os.path.join("camfields", "cuda_build.py"))
    cuda_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cuda_build)
    if cuda_build.apply_environment() is None:
        raise SystemExit("CAMFIELDS_BUILD_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME")
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    extension = CUDAExtension(
        cuda_build.EXTENSION_NAME,
        sources=list(cuda_build.SOURCE_NAMES),
        include_dirs=[os.path.abspath("cuda")],
        extra_compile_args=cuda_build.compile_flags(),
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtension}}


setup(
    name="camfields",
    version="0.1.0",
    description="Neural fields with coordinate-aware modulation (CAM): images, NeRF, dynamic scenes, video",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[*find_packages(include=["camfields", "camfields.*"]), "camfields._presets", "camfields._csrc"],
    package_dir={"camfields._presets": "scenes", "camfields._csrc": "cuda"},
    package_data={"camfields._presets": ["*/*.toml"], "camfields._csrc": ["*.cpp", "*.cu", "*.h", "*.cuh"]},
    entry_points={"console_scripts": ["camfields = camfields.__main__:main"]},
    install_requires=[
        "torch>=2.1",
        "numpy",
        "imageio>=2.28",
        "imageio-ffmpeg",  # the ffmpeg binary: turntable videos, video input, x264/x265 baselines
        "constriction",  # range coding of quantized weights in the bitstream
        "matplotlib",  # the rate-distortion plot of eval_rd.py
        "tqdm",
        "tensorboard",
        "lpips",
        "pytorch-msssim",  # SSIM / MS-SSIM from a maintained library
        "scikit-image",  # ships the embedded default image (public-domain astronaut photo)
        "dacite",  # strict typed configs from TOML
        "tomli; python_version < '3.11'",
    ],
    extras_require={"test": ["pytest>=7"], "cuda": ["ninja"]},  # ninja: torch's just-in-time CUDA build
    **(cuda_extension_kwargs() if os.environ.get("CAMFIELDS_BUILD_CUDA") == "1" else {}),
)
